"""A simulated camera: an RTSP server that serves one MP4's H.264 on 127.0.0.1 without re-encoding.

A standalone script that nothing imports: it runs under Debian's ``/usr/bin/python3``
(the only Python here with GStreamer's ``gi`` bindings), which lacks rtseg's dependencies, so it imports
nothing from rtseg. ``rtseg.offline.rtsp.RtspServer`` starts it by path.

Each client gets its own pipeline reading the file from the start, paced in real time by the server's clock.
Prints ``ready`` once it listens.

usage: /usr/bin/python3 rtseg/offline/rtsp_server.py --port 8554 --clip clip.mp4 [--mount /clip]
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--mount", default="/clip")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = args.clip.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(f'( filesrc location="{location}" ! qtdemux ! queue ! h264parse '
                       "! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(False)  # one pipeline per client: the shared mode aborted with simultaneous clients
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
