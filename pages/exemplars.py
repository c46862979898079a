"""Exemplars: named, versioned few-shot exemplar sets."""

import streamlit as st

st.title("Exemplar sets")
st.info("Exemplar sets are being built.")
