"""The HTTP client's pure parts: the reply parser, the digest answers, the URL checks."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodes.http import digest as digest_module
from nodes.http.client import HttpError, basic_authorization, parse_url
from nodes.http.digest import Digest, DigestError, parse_challenges
from nodes.http.reply import MAX_HEAD_BYTES, MAX_HEAD_LINES, Reply, ReplyError, ReplyTooLarge

OK = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
      b'{"a": 1.5}\n')
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value;quoted=\"a;b\"\r\nhello\r\n"
           b"7 ; ext\r\n, world\r\n"
           b"0\r\nX-Checksum: 1234\r\nX-Other: 5\r\n\r\n")


def parse(data: bytes, max_bytes: int = 1 << 20, *, pieces: int = 1) -> Reply:
    """`data` fed in `pieces` parts (1: at once; len(data): byte by byte); complete."""
    reply = Reply(max_bytes)
    step = max(1, -(-len(data) // pieces))
    done = False
    for i in range(0, len(data), step):
        assert not done, "complete before its last byte"
        done = reply.feed(data[i:i + step])
    assert done
    return reply


@pytest.mark.parametrize("pieces", [1, 2, 7, len(OK)])
def test_a_reply_with_a_length_is_the_same_in_any_pieces(pieces: int) -> None:
    reply = parse(OK, pieces=pieces)
    assert (reply.status, reply.reason, reply.body) == (200, "OK", b'{"a": 1.5}\n')
    assert reply.headers == {"content-type": "application/json", "content-length": "11"}
    assert reply.keep_alive


def test_header_names_are_case_insensitive_and_repeats_join() -> None:
    reply = parse(b"HTTP/1.1 401 Unauthorized\r\nCONTENT-length: 0\r\nX-A: 1\r\nx-a: 2\r\n"
                  b"WWW-Authenticate: Basic realm=\"a, b\"\r\n"
                  b"www-authenticate: Digest realm=\"r\", nonce=\"n\"\r\n\r\n")
    assert reply.headers["x-a"] == "1, 2" and reply.headers["content-length"] == "0"
    assert reply.challenges == ['Basic realm="a, b"', 'Digest realm="r", nonce="n"']
    assert (reply.status, reply.reason, reply.body) == (401, "Unauthorized", b"")


def test_a_reply_with_bare_newlines_parses() -> None:
    reply = parse(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    assert reply.body == b"ok" and reply.headers == {"content-length": "2"}


def test_a_folded_header_line_continues_the_value() -> None:
    reply = parse(b"HTTP/1.1 200 OK\r\nX-Long: one\r\n  two\r\nContent-Length: 0\r\n\r\n")
    assert reply.headers["x-long"] == "one two"


@pytest.mark.parametrize("pieces", [1, 3, len(CHUNKED)])
def test_chunked_with_extensions_and_trailers(pieces: int) -> None:
    reply = parse(CHUNKED, pieces=pieces)
    assert reply.body == b"hello, world"
    assert "x-checksum" not in reply.headers  # trailers are read and dropped
    assert reply.keep_alive


def test_interim_1xx_answers_are_skipped() -> None:
    reply = parse(b"HTTP/1.1 100 Continue\r\n\r\n"
                  b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + OK,
                  pieces=5)
    assert reply.status == 200 and reply.body == b'{"a": 1.5}\n'
    assert "link" not in reply.headers


def test_101_is_an_error() -> None:
    with pytest.raises(ReplyError, match="unexpected 101"):
        Reply(100).feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")


def test_a_body_until_close_ends_at_eof_and_is_not_kept_alive() -> None:
    reply = Reply(100)
    assert not reply.feed(b"HTTP/1.1 200 OK\r\n\r\nsome ")
    assert not reply.feed(b"text")
    assert reply.feed_eof()
    assert reply.body == b"some text" and not reply.keep_alive


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int) -> None:
    reply = Reply(100)
    assert reply.feed(f"HTTP/1.1 {status} X\r\nContent-Length: 5\r\n\r\n".encode())
    assert reply.body == b"" and reply.keep_alive


@pytest.mark.parametrize(("head", "keep"), [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", False),
    (b"HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\n", False),
    (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n", True),
    (b"HTTP/1.0 200 OK\r\n", False),
    (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n", True),
])
def test_which_replies_keep_the_connection(head: bytes, keep: bool) -> None:
    assert parse(head + b"Content-Length: 2\r\n\r\nok").keep_alive is keep


def test_bytes_beyond_the_reply_end_the_keep_alive() -> None:
    assert not parse(OK + b"HTTP/1.1 200 OK\r\n").keep_alive


def test_a_reply_cut_short_is_not_complete_and_one_never_begun_is_not_started() -> None:
    cut = Reply(100)
    assert not cut.feed(OK[:-3])
    assert not cut.feed_eof() and cut.started
    never = Reply(100)
    assert not never.feed_eof() and not never.started


@pytest.mark.parametrize("line", [
    b"HTTP/2 200 OK", b"HTTP/1.1 20 OK", b"ICY 200 OK", b"HTTP/1.1 abc OK", b"HTTP/1.1 099 X",
    b"HTTP/1.1 \xb200 X", b"<html>", b"",
])
def test_a_malformed_status_line_is_an_error(line: bytes) -> None:
    with pytest.raises(ReplyError, match="malformed status line"):
        Reply(100).feed(line + b"\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize(("headers", "error"), [
    (b"Content-Length: abc", "bad Content-Length"),
    (b"Content-Length: -1", "bad Content-Length"),
    (b"Content-Length: +5", "bad Content-Length"),
    (b"Content-Length: 1e3", "bad Content-Length"),
    (b"Content-Length: ", "bad Content-Length"),
    (b"Content-Length: 5, 6", "conflicting Content-Length"),
    (b"Content-Length: 5\r\nContent-Length: 6", "conflicting Content-Length"),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 5", "both Transfer-Encoding and"),
    (b"Transfer-Encoding: gzip", "transfer coding 'gzip' not supported"),
    (b"No colon here", "malformed header line"),
    (b"Bad Name: x", "malformed header line"),
    (b": no name", "malformed header line"),
])
def test_malformed_framing_is_an_error(headers: bytes, error: str) -> None:
    with pytest.raises(ReplyError, match=error):
        Reply(100).feed(b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n\r\nhello")


def test_repeated_equal_lengths_are_one_length() -> None:
    reply = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok")
    assert reply.body == b"ok"


@pytest.mark.parametrize("chunks", [b"xyz\r\n", b"0x5\r\n", b"1_0\r\n", b"\r\n",
                                    b"-5\r\n", b"1234567890abcdef0\r\n"])
def test_a_bad_chunk_size_is_an_error(chunks: bytes) -> None:
    with pytest.raises(ReplyError, match="bad chunk size"):
        Reply(100).feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)


def test_a_chunk_longer_than_its_size_is_an_error() -> None:
    with pytest.raises(ReplyError, match="chunk longer than its size"):
        Reply(100).feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"2\r\nabc\r\n0\r\n\r\n")


def test_an_endless_chunk_size_line_is_an_error() -> None:
    reply = Reply(100)
    reply.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;")
    with pytest.raises(ReplyError, match="chunk size line too long"):
        for _ in range(100):
            reply.feed(b"x" * 100)


# the limits: one byte more than allowed fails, exactly the limit passes

def test_a_length_beyond_the_limit_fails_before_the_body_comes() -> None:
    assert parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + b"x" * 10, 10).body \
        == b"x" * 10
    with pytest.raises(ReplyTooLarge, match="reply larger than 10 bytes") as caught:
        Reply(10).feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 11\r\n\r\n")
    assert (caught.value.status, caught.value.reason) == (404, "Not Found")


def test_the_limit_holds_for_the_sum_of_the_chunks() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert parse(head + b"5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n", 10).body == b"1234567890"
    with pytest.raises(ReplyTooLarge, match="reply larger than 10 bytes"):
        Reply(10).feed(head + b"5\r\n12345\r\n6\r\n")


def test_the_limit_holds_for_a_body_until_close() -> None:
    reply = Reply(10)
    reply.feed(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 10)
    with pytest.raises(ReplyTooLarge, match="reply larger than 10 bytes"):
        reply.feed(b"y")


def _head_of(size: int) -> bytes:
    """A complete head of exactly `size` bytes (blank line included)."""
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: "
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


def test_the_header_block_may_be_16_kib_not_a_byte_more() -> None:
    assert len(_head_of(MAX_HEAD_BYTES)) == MAX_HEAD_BYTES
    assert parse(_head_of(MAX_HEAD_BYTES)).status == 200
    with pytest.raises(ReplyError, match="header block larger than 16384 bytes"):
        Reply(100).feed(_head_of(MAX_HEAD_BYTES + 1))


def test_a_head_that_never_ends_fails_at_16_kib_in_any_pieces() -> None:
    reply = Reply(100)
    reply.feed(b"HTTP/1.1 200 OK\r\n")
    fed = 17
    with pytest.raises(ReplyError, match="header block larger"):
        while fed <= MAX_HEAD_BYTES + 1:
            reply.feed(b"X: y\r\n")
            fed += 6
    assert fed <= MAX_HEAD_BYTES + 6  # it failed as soon as the limit was passed


def test_interim_answers_count_toward_the_header_limits() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n" + b"X: y\r\n" * 60 + b"\r\n"
    with pytest.raises(ReplyError, match=f"more than {MAX_HEAD_LINES} header lines"):
        Reply(100).feed(interim + interim)


def test_at_most_100_header_lines() -> None:
    lines = b"X: y\r\n" * (MAX_HEAD_LINES - 1)
    assert parse(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + lines + b"\r\n").status == 200
    with pytest.raises(ReplyError, match=f"more than {MAX_HEAD_LINES} header lines"):
        Reply(100).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + lines + b"X: z\r\n\r\n")


def test_trailers_count_toward_the_header_limits() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
    with pytest.raises(ReplyError, match="header lines"):
        Reply(100).feed(head + b"T: 1\r\n" * MAX_HEAD_LINES + b"\r\n")
    reply = Reply(100)
    reply.feed(head)
    with pytest.raises(ReplyError, match="header block larger"):
        for _ in range(MAX_HEAD_BYTES // 64 + 2):
            reply.feed(b"t" * 64)


# digest

RFC_CHALLENGE = ('Digest realm="http-auth@example.org", qop="auth, auth-int", '
                 'algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
                 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def params_of(authorization: str) -> dict[str, str]:
    ((scheme, params),) = parse_challenges(authorization)
    assert scheme == "digest"
    return params


@pytest.mark.parametrize(("alg", "response"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_digest_answers_the_rfc_7616_example(alg: str, response: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_module.secrets, "token_hex", lambda n: RFC_CNONCE)
    auth = Digest("Mufasa", "Circle of Life")
    assert auth.challenged("origin", [RFC_CHALLENGE.format(alg=alg)])
    value = auth.authorization("origin", "GET", "/dir/index.html")
    assert value is not None
    assert params_of(value) == {
        "username": "Mufasa", "realm": "http-auth@example.org", "uri": "/dir/index.html",
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "algorithm": alg,
        "response": response, "qop": "auth", "nc": "00000001", "cnonce": RFC_CNONCE,
        "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"}


def _h(name: str, text: str) -> str:
    return hashlib.new(name, text.encode()).hexdigest()


@pytest.mark.parametrize(("alg", "hash_name"), [("MD5-sess", "md5"),
                                                ("SHA-256-sess", "sha256")])
def test_digest_sess_algorithms_hash_the_nonce_and_cnonce_into_ha1(alg: str,
                                                                  hash_name: str) -> None:
    auth = Digest("admin", "pw")
    auth.challenged("o", [f'Digest realm="r", nonce="n1", qop="auth", algorithm={alg}'])
    got = params_of(auth.authorization("o", "GET", "/x?y=1") or "")
    ha1 = _h(hash_name, f"{_h(hash_name, 'admin:r:pw')}:n1:{got['cnonce']}")
    expected = _h(hash_name, f"{ha1}:n1:{got['nc']}:{got['cnonce']}:auth:"
                             f"{_h(hash_name, 'GET:/x?y=1')}")
    assert got["response"] == expected and got["algorithm"] == alg


def test_digest_without_qop_is_the_rfc_2069_form() -> None:
    auth = Digest("Mufasa", "Circle Of Life")
    auth.challenged("o", ['Digest realm="testrealm@host.com", '
                          'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"'])
    got = params_of(auth.authorization("o", "GET", "/dir/index.html") or "")
    ha1 = _h("md5", "Mufasa:testrealm@host.com:Circle Of Life")
    expected = _h("md5", f"{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:"
                         f"{_h('md5', 'GET:/dir/index.html')}")
    assert got["response"] == expected
    assert not {"qop", "nc", "cnonce", "algorithm"} & got.keys()


def test_digest_answers_shellys_challenge_as_the_device_checks_it() -> None:
    """Shelly Gen2+: user admin, realm = device id, SHA-256, qop auth (devices.md)."""
    password = "s3cret"
    auth = Digest("admin", password)
    auth.challenged("o", ['Digest qop="auth", realm="shellypro3em-a0a3b3000001", '
                          'nonce="60dc59c6", algorithm=SHA-256'])
    got = params_of(auth.authorization("o", "GET", "/rpc/EM.GetStatus?id=0") or "")
    ha1 = _h("sha256", f"admin:shellypro3em-a0a3b3000001:{password}")
    ha2 = _h("sha256", "GET:/rpc/EM.GetStatus?id=0")
    assert got["response"] == _h("sha256", f"{ha1}:60dc59c6:{got['nc']}:{got['cnonce']}"
                                           f":auth:{ha2}")
    assert got["uri"] == "/rpc/EM.GetStatus?id=0" and got["qop"] == "auth"


def test_nc_counts_up_per_nonce_and_the_cnonce_is_new_each_time() -> None:
    auth = Digest("admin", "pw")
    auth.challenged("o", ['Digest realm="r", nonce="n1", qop="auth"'])
    first, second = (params_of(auth.authorization("o", "GET", "/") or "") for _ in "12")
    assert (first["nc"], second["nc"]) == ("00000001", "00000002")
    assert first["cnonce"] != second["cnonce"] and len(first["cnonce"]) == 16
    assert auth.challenged("o", ['Digest realm="r", nonce="n2", qop="auth"'])
    assert params_of(auth.authorization("o", "GET", "/") or "")["nc"] == "00000001"


def test_a_challenge_is_kept_per_origin() -> None:
    auth = Digest("admin", "pw")
    auth.challenged("a", ['Digest realm="r", nonce="n1", qop="auth"'])
    assert auth.authorization("b", "GET", "/") is None
    assert auth.has_challenge("a") and not auth.has_challenge("b")


def test_which_401_challenges_are_worth_a_retry() -> None:
    auth = Digest("admin", "pw")
    assert not auth.challenged("o", ['Basic realm="x"'])  # no digest: wrong credentials
    assert auth.challenged("o", ['Digest realm="r", nonce="n1", qop="auth"'])  # the first
    assert not auth.challenged("o", ['Digest realm="r", nonce="n1", qop="auth"'])  # refused
    assert auth.challenged("o", ['Digest realm="r", nonce="n1", qop="auth", stale=TRUE'])
    assert auth.challenged("o", ['Digest realm="r", nonce="n2", qop="auth"'])  # a new nonce


@pytest.mark.parametrize(("challenge", "error"), [
    ('Digest realm="r", nonce="n", algorithm=SHA-512-256', "algorithm 'SHA-512-256'"),
    ('Digest realm="r", nonce="n", qop="auth-int"', "qop 'auth-int' not supported"),
    ('Digest realm="r", nonce="n", algorithm=MD5-sess', "needs a qop"),
    ('Digest realm="r"', "without a nonce"),
])
def test_a_challenge_this_client_cannot_answer_says_why_without_the_password(
        challenge: str, error: str) -> None:
    auth = Digest("admin", "hunter2-secret")
    with pytest.raises(DigestError, match=error) as caught:
        auth.challenged("o", [challenge])
    assert "hunter2-secret" not in str(caught.value)
    assert "hunter2-secret" not in repr(auth)


def test_quotes_in_the_username_and_realm_are_escaped() -> None:
    auth = Digest('ad"min\\', "pw")
    auth.challenged("o", ['Digest realm="a \\"quoted\\", realm", nonce="n", qop=auth'])
    got = params_of(auth.authorization("o", "GET", "/") or "")
    assert got["username"] == 'ad"min\\' and got["realm"] == 'a "quoted", realm'


def test_challenges_parse_with_quoted_commas_escapes_and_any_case() -> None:
    header = ('Newauth realm="apps", type=1, title="Login to \\"apps\\"", '
              'DIGEST REALM="x, y", Nonce=abc, qop="auth,auth-int",  stale = true')
    assert parse_challenges(header) == [
        ("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        ("digest", {"realm": "x, y", "nonce": "abc", "qop": "auth,auth-int",
                    "stale": "true"})]


@given(st.text(alphabet=' \t,="\\aZ=-;:/'), st.text())
def test_any_challenge_text_parses_without_an_exception(odd: str, other: str) -> None:
    for header in (odd, other, "Digest " + odd):
        for scheme, params in parse_challenges(header):
            assert isinstance(scheme, str) and isinstance(params, dict)


# URLs and basic auth

def test_parse_url_gives_key_target_and_host_header() -> None:
    assert parse_url("http://192.168.1.50/rpc/EM.GetStatus?id=0") == (
        ("http", "192.168.1.50", 80), "/rpc/EM.GetStatus?id=0", "192.168.1.50")
    assert parse_url("HTTP://Shelly.LAN:8080") == (("http", "shelly.lan", 8080), "/",
                                                   "shelly.lan:8080")
    assert parse_url("https://[::1]:8443/a b?x=ä#frag") == (
        ("https", "::1", 8443), "/a%20b?x=%C3%A4", "[::1]:8443")
    assert parse_url("https://dev.lan:443/x%20y")[2] == "dev.lan"


@pytest.mark.parametrize(("url", "error"), [
    ("http://admin:hunter2-secret@192.168.1.5/status", "credentials in the URL"),
    ("ftp://host/x", "not an absolute http"),
    ("/status", "not an absolute http"),
    ("http:///x", "not an absolute http"),
    ("http://host:99999/", "malformed URL"),
    ("http://host:0/", "malformed URL"),
    ("http://ho st/", "malformed URL"),
])
def test_urls_the_client_refuses(url: str, error: str) -> None:
    with pytest.raises(HttpError, match=error) as caught:
        parse_url(url)
    assert "hunter2-secret" not in str(caught.value)


def test_basic_authorization_is_utf8_base64() -> None:
    assert basic_authorization("admin", "pässword") == "Basic YWRtaW46cMOkc3N3b3Jk"


@given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=20))
def test_any_bytes_in_any_pieces_are_a_reply_or_a_reply_error(data: bytes,
                                                             cuts: list[int]) -> None:
    for prefix in (b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                   b"chunked\r\n\r\n"):
        reply, rest = Reply(64), prefix + data
        try:
            for size in [*cuts, len(rest)]:
                piece, rest = rest[:size], rest[size:]
                if reply.feed(piece):
                    break
            reply.feed_eof()
        except ReplyError:
            continue
        assert len(reply.body) <= 64
