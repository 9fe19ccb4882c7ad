"""The shipped config: setup.py installs this folder as the package `segments_lib.conf` (read with
importlib.resources by `segments_lib.config`), and `make package` puts it into the --py-files zip."""
