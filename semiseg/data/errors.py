"""The one exception type of the data pipeline.

Every problem with files on disk (split lists, images, masks, class lists) raises `DataError`
with a message that names the offending file and says how to fix it. It subclasses
`ValueError` so callers that already catch bad values keep working.
"""


class DataError(ValueError):
    """Bad or missing dataset files; the message names the file and the fix."""
