"""The STaR loop and the science it orders: creating a run, the loop itself, the judge and the filter,
the curriculum, the stopping rule, progress, exemplar sets, the machine's run queue, and the
paper's experiment.
"""
