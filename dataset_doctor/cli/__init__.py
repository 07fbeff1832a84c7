"""The `doctor` command line: thin Typer commands over the library functions.

Each command lives in its own module and registers itself on the shared `app` when imported; a command
appears here only once it works. (One import statement per line keeps parallel additions merge-friendly.)
"""

import dataset_doctor.cli.audit  # noqa: F401
import dataset_doctor.cli.demo  # noqa: F401
import dataset_doctor.cli.evaluate  # noqa: F401
import dataset_doctor.cli.fix  # noqa: F401
import dataset_doctor.cli.predict  # noqa: F401
import dataset_doctor.cli.rebalance  # noqa: F401
import dataset_doctor.cli.report  # noqa: F401
import dataset_doctor.cli.sample  # noqa: F401
import dataset_doctor.cli.split  # noqa: F401
import dataset_doctor.cli.train  # noqa: F401
import dataset_doctor.cli.val  # noqa: F401
import dataset_doctor.cli.weights  # noqa: F401
from dataset_doctor.cli.app import app, main

__all__ = ["app", "main"]
