"""Named limits of the data checks: how many example rows a finding cites, and the
share of affected rows that makes a finding a warning or an error."""

MAX_EXAMPLES = 5
ERROR_SHARE = 0.10  # duplicate groups touching >= 10% of rows make the run unlearnable
WARN_SHARE = 0.01  # below 1% of rows, a few coincidences (real data has some) are info only
MAX_EMBED_TEXTS = 20000  # cap for the optional embedding near-duplicate search
