"""`python -m constrained.check --readme`: regenerate the README's supported-keywords section."""

import argparse

from constrained.check.guide import README, update_readme

parser = argparse.ArgumentParser(prog="python -m constrained.check", description=__doc__)
parser.add_argument("--readme", action="store_true", required=True, help=f"rewrite the section of {README}")
parser.parse_args()
print(f"{README}: {'updated' if update_readme() else 'already up to date'}")
