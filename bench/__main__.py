"""``python -m bench``: see :mod:`bench.run`; ``python -m bench soak``: see :mod:`bench.soak`;
``python -m bench window-rss``: see :mod:`bench.window_rss`."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["soak"]:
        from bench.soak import main as soak

        raise SystemExit(soak(sys.argv[2:]))
    if sys.argv[1:2] == ["window-rss"]:
        from bench.window_rss import main as window_rss

        raise SystemExit(window_rss(sys.argv[2:]))
    from bench.run import main

    raise SystemExit(main())
