"""Audit: hand-label rationale quality (sound / flawed / wrong), with tags and notes."""

import streamlit as st

st.title("Audit rationales")
st.info("The audit queue is being built.")
