"""`tvo ui`: a local web app to start, watch, stop and compare the grids under an output root."""
