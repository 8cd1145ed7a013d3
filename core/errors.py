"""The one exception type users see; its message names the file/object and the fix."""


class ImitatorError(Exception):
    """An error the user can act on (bad file, wrong topology, missing data, ...)."""
