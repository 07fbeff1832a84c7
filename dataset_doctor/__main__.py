"""`python -m dataset_doctor` is the same as the `doctor` command."""

from dataset_doctor.cli import main

main()
