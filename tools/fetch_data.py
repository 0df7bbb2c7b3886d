"""Put FashionMNIST where the notebooks look for it (the `make data` step of `make all` and `make test`).

    python tools/fetch_data.py                   # data/ (or HW_DATA_DIR)
    python tools/fetch_data.py --no-apt          # skip the Debian package, download

Order: nothing to do when the four files are in DATA_DIR/FashionMNIST/raw/ or in the Debian package's folder;
on a Debian-based system, as root or with passwordless sudo, `apt-get install dataset-fashion-mnist`;
otherwise, or when that fails, the notebooks' own downloader (src/shared_helpers.py: mirrors, checksums of
the decompressed files, atomic writes). The data are checked either way.
"""
import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_notebooks import ROOT, shared_helpers_namespace  # noqa: E402  (checks the Python version first)


def apt_install() -> bool:
    """Install the Debian package when this is a Debian-based system and root or passwordless sudo is at hand."""
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        return False
    if os.geteuid() == 0:
        sudo = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        sudo = ["sudo", "-n"]
    else:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = sudo + ["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]
    print("installing the Debian package dataset-fashion-mnist")
    if subprocess.run(install, env=env).returncode == 0:
        return True
    subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env)  # a new machine may have no package list yet
    return subprocess.run(install, env=env).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("HW_DATA_DIR", ROOT / "data")))
    parser.add_argument("--no-apt", action="store_true", help="do not try the Debian package")
    args = parser.parse_args()
    helpers = shared_helpers_namespace({"DATA_DIR": args.data_dir})
    if helpers["find_fashion_dir"](args.data_dir) is None and not args.no_apt:
        if not apt_install():
            print("the Debian package is not available here: downloading instead")
    try:
        helpers["load_fashion_mnist"](args.data_dir)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
