import sys

from streams.worker.runner import main

if __name__ == "__main__":  # the feature-store writer process is spawned: it must not re-run this
    sys.exit(main())
