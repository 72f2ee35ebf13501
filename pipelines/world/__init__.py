"""The synthetic payments world: a deterministic generator that plays checkout,
processors and banks, so every test and benchmark runs on the same realistic data."""
