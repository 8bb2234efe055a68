# checkov loads external checks only from directories with an __init__.py.
