"""Each command's work, imported only when that command runs (so --help stays fast)."""
