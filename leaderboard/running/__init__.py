"""Running the benchmark: plan the cells, decode the data, fit and measure each cell, score it."""
