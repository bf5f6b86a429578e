"""The audit example: the shipped All_Beauty slice with the parameters that were the schema defaults
before they became a small ml-latest-small run (README: the documented example of what notebook 01's
audit catches: 20 users, K-shot sizes flagged). Tests of notebook 01 on that slice layer these."""

EMBEDDED_BEAUTY = {
    "DATASET": "embedded_beauty",
    "KCORE": 5,
    "PROFILE_ITEMS": 15,
    "KSHOT_SIZES": [64, 128, 256],
    "N_VALID": 600,
    "N_TEST": 600,
    "MAX_USERS": 0,
}
