"""The nightly job: the chain of stages per segment and night, the results and the summary."""
