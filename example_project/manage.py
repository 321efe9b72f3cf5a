#!/usr/bin/env python
"""Django's command-line utility for the example project.

Run it from anywhere: ``python example_project/manage.py demo``.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailsite.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as error:
        raise ImportError(
            "Couldn't import Django. Install the example project's requirements "
            "first: pip install -e '.[testing,example]'"
        ) from error
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
