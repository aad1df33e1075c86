"""svc_crash - test service that fails at startup, every time."""

import sys

if __name__ == "__main__":
    sys.stderr.write("svc_crash: failing on purpose\n")
    sys.exit(3)
