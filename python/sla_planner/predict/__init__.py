"""Load predictors: constant, linear, kalman, arima, prophet; warm-up from traces."""
