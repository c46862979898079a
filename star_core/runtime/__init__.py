"""Runs away from the caller: background workers the app starts and cancels, and the one worker
entry point every background process is started through.
"""
