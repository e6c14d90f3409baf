"""Execute notebooks headlessly in the evcxr kernel; fail on any cell error.

usage: execute.py OUT_DIR NOTEBOOK...   (writes the executed notebooks into OUT_DIR)
"""
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    failed = []
    for path in sys.argv[2:]:
        nb = nbformat.read(path, as_version=4)
        t0 = time.time()
        client = NotebookClient(nb, timeout=3600, kernel_name="rust", resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
        name = os.path.basename(path)
        try:
            client.execute()
            status = "ok"
        except CellExecutionError as e:
            status = "FAILED"
            failed.append(name)
            print(f"--- {name}: cell error\n{e}", file=sys.stderr)
        nbformat.write(nb, os.path.join(out_dir, name))
        print(f"{name}: {status} in {time.time() - t0:.0f} s", flush=True)
    if failed:
        sys.exit(f"notebooks with errors: {', '.join(failed)}")


if __name__ == "__main__":
    main()
