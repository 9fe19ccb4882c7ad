"""What a precision level promises and whether it held: calibration, the backtest ledger, drift, stability."""
