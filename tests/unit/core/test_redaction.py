"""Credentials in every form a URL carries them, masked by the one function every message, log line, window title,
manifest and cluster log goes through (``mask_credentials``); the exhaustive user:password cases and the property
test are in tests/system/test_live.py, the log filter's there and in tests/system/test_cli_inputs.py (every form,
through the command line, with and without --debug)."""

from __future__ import annotations

import pytest

from rtseg.core.redaction import mask_credentials


@pytest.mark.parametrize(("text", "masked"), [
    ("rtsp://admin:SECRET@10.0.0.7/s", "rtsp://admin:***@10.0.0.7/s"),  # user and password: the password
    ("rtsp://SECRET@127.0.0.1:1/s", "rtsp://***@127.0.0.1:1/s"),  # a token alone before '@'
    ("cannot open 'rtsps://SECRET@cam:322/live': refused", "cannot open 'rtsps://***@cam:322/live': refused"),
    ("rtsp://127.0.0.1:1/s?user=admin&password=SECRET", "rtsp://127.0.0.1:1/s?user=admin&password=***"),
    ("http://cam/mjpg?pwd=SECRET&res=hd", "http://cam/mjpg?pwd=***&res=hd"),
    ("http://cam/mjpg?passwd=SECRET#top", "http://cam/mjpg?passwd=***#top"),
    ("http://cam/x?pass=SECRET;user=bob", "http://cam/x?pass=***;user=bob"),
    ("https://h/hook?access_token=SECRET", "https://h/hook?access_token=***"),
    ("https://h/x?apikey=SECRET&api_key=SECRET&Key=SECRET", "https://h/x?apikey=***&api_key=***&Key=***"),
    ("https://h/x?auth=SECRET&Authorization=SECRET", "https://h/x?auth=***&Authorization=***"),
    ("https://b/o?X-Amz-Signature=SECRET&sig=SECRET", "https://b/o?X-Amz-Signature=***&sig=***"),
    ("rtsp://t0k@a/1 and http://u:p@b/2?token=SECRET", "rtsp://***@a/1 and http://u:***@b/2?token=***"),
    ("udp://@239.0.0.1:1234", "udp://@239.0.0.1:1234"),  # multicast: an empty userinfo hides nothing
    ("http://cam/video?channel=2&fps=10", "http://cam/video?channel=2&fps=10"),  # nothing secret
    ("plain text, a@b and x:y", "plain text, a@b and x:y"),
])
def test_every_form_of_credential_is_masked(text, masked):
    assert mask_credentials(text) == masked
    assert "SECRET" not in mask_credentials(text)

