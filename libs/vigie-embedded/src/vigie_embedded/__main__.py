"""``python -m vigie_embedded demo``: run the platform on its embedded defaults."""

import argparse
import sys
from pathlib import Path

from vigie_embedded.demo import DemoOptions, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(prog="vigie", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="analyse a video with a local nats-server, tritonserver and services"
    )
    demo.add_argument("--video", type=Path, required=True)
    demo.add_argument("--model-repository", type=Path, required=True, help="the python-backend variant")
    demo.add_argument("--sample-fps", type=float, default=5.0, help="frames analysed per second of video")
    demo.add_argument("--serve", action="store_true", help="keep running after the video, until Ctrl-C")
    demo.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    demo.add_argument("--json", action="store_true", help="print only a JSON summary (for tests)")
    args = parser.parse_args()
    options = DemoOptions(
        video=args.video,
        model_repository=args.model_repository,
        sample_fps=args.sample_fps,
        timeout_s=args.timeout,
        serve=args.serve,
        as_json=args.json,
    )
    sys.exit(run_demo(options))


if __name__ == "__main__":
    main()
