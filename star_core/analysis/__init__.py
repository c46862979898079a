"""What the stored attempts say: statistics, paired run comparison, trajectories, audit agreement,
export, and the formatting both the CLI and the pages show. Reads the store; never runs a model.
"""
