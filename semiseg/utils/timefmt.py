"""Human-readable durations."""


def format_duration(seconds: float) -> str:
    """`H:MM:SS` for a number of seconds (negative values count as 0)."""
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f'{h:d}:{m:02d}:{s:02d}'
