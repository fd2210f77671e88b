#!/bin/bash
# Restart es-ESS flows (daemontools sends SIGTERM, waits for the safe states, starts again).
svc -t "${ESESS_SERVICE_DIR:-/service}/es-ESS"
