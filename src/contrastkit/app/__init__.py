"""The application: training and evaluation runs, sweeps, the CLI and search.

This is the only package that imports all the others (data, models, losses, train,
eval, doctor). Nothing below it imports from here.
"""
