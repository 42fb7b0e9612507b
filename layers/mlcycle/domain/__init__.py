"""Pure lifecycle stages: functions over DataFrames and typed parameters, no AWS."""
