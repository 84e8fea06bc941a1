"""Upper bounds of the numbers a user gives, in files or on the command line.

Numbers go to SQLite (64-bit integers), llama.cpp (32-bit) and model servers; one beyond them must
be refused where it is given, in one clear message, never fail later as an OverflowError. This
module imports nothing, so the CLI can bound its options without loading the config models.
"""

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_TURNS = 100_000
SEED_MAX = INT32_MAX - MAX_TURNS  # llama.cpp seeds are 32-bit, and a run adds the turn number
MAX_NUM_CTX = 16_777_216
MAX_FILE_BYTES = 4 * 1024 * 1024  # a persona or scenario file; far beyond any real one
