"""The exit codes of every command: a contract CI jobs branch on (README, "Exit codes").

| code | meaning                                                                        |
|------|--------------------------------------------------------------------------------|
| 0    | done; every requested budget and target met                                    |
| 1    | internal error, or a pass produced a broken model                              |
| 2    | bad input or usage: one line on stderr, nothing written                        |
| 3    | a budget missed (accuracy, SQNR, size): the closest result is saved            |
| 4    | a speed-up or latency target missed within the budget (0 with --best-effort)   |
| 130  | interrupted: the command to resume is printed when finished work was kept      |
"""

OK = 0
INTERNAL_ERROR = 1
BAD_INPUT = 2
BUDGET_MISSED = 3
TARGET_MISSED = 4
INTERRUPTED = 130
