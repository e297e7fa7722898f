"""An RTSP camera for the tests: serves an H.264 MP4 file on rtsp://127.0.0.1:PORT/camera.

Run with Debian's /usr/bin/python3, which has GStreamer's bindings (python3-gi and
gir1.2-gst-rtsp-server-1.0, with gstreamer1.0-plugins-good and -bad). Prints the bound port on its
first line, then serves until killed. Usage: rtsp_camera.py FILE.mp4 [PORT]
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

REQUIRED_ELEMENTS = ("filesrc", "qtdemux", "h264parse", "rtph264pay")


def main() -> None:
    Gst.init(None)
    if sys.argv[1:] == ["--check"]:
        missing = [name for name in REQUIRED_ELEMENTS if Gst.ElementFactory.find(name) is None]
        if missing:
            sys.exit(f"missing GStreamer elements: {', '.join(missing)}")
        return
    path, port = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "0"
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # config-interval=1 repeats SPS/PPS with every keyframe (with -1 keyframes were decoded twice).
    factory.set_launch(
        f"( filesrc location={path} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/camera", factory)
    server.attach(None)
    print(server.get_bound_port(), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
