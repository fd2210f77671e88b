"""The guardian: a small parent process that keeps the safe states when the runtime cannot.

Standard library only (it must run when a third-party package is what broke), one
thread, no polling. See `supervisor` for what it does and `actions` for what it can do.
The runtime's side of the conversation is `flowengine.guard`.
"""
