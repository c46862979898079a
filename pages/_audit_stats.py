"""The Audit page's second view, "What the audits say": the share rated sound, the verifier against the
auditors, the auditors against each other, the rationales flagged by tag, and the label exports."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st

from pages import _ui as ui
from star_core.analysis.agreement import agreement, sound_share, verifier_agreement
from star_core.analysis.present import pct

KIND_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def stats_view(store) -> None:
    labels = store.run_labels()
    runs = [None] + sorted(labels, reverse=True)
    c = st.columns([2, 2, 1])
    run_id = c[0].selectbox("Run", runs, key="s_run", format_func=lambda r: "all runs" if r is None else labels.get(r, f"#{r}"))
    c[1].write("")
    st.session_state.setdefault("s_kept", True)
    kept_only = c[1].toggle("Kept rationales only", key="s_kept",
                          help="The share among rationales that went into fine-tuning (the training data's quality)")
    share = sound_share(store, run_id, kept_only=kept_only)
    audited = share[share.audited > 0]
    st.subheader("Share rated sound")
    if audited.empty:
        st.info("No audited rationales here yet.")
    else:
        fig = go.Figure()
        series = list(audited.groupby(["run_id", "kind"]))
        for number, ((rid, kind), r) in enumerate(series):
            name = kind if run_id is not None else f"run {rid} · {kind}"
            color = KIND_COLORS[number % len(KIND_COLORS)]
            dodge = (number - (len(series) - 1) / 2) * 0.08  # side by side, so the intervals do not hide each other
            fig.add_trace(go.Scatter(
                x=r.iteration + dodge, y=r.sound_share, mode="lines+markers", name=name,
                marker=dict(color=color, size=9), line=dict(color=color),
                error_y=dict(type="data", symmetric=False, array=r.ci_high - r.sound_share,
                             arrayminus=r.sound_share - r.ci_low, color=color),
                customdata=r[["iteration", "sound", "audited", "kept", "ci_low", "ci_high"]].to_numpy(),
                hovertemplate="iteration %{customdata[0]}: %{y:.0%} sound (%{customdata[1]} of %{customdata[2]} audited, "
                              "%{customdata[3]} in all)<br>95% CI %{customdata[4]:.0%}–%{customdata[5]:.0%}<extra>"
                              + name + "</extra>",
            ))
        fig.update_layout(yaxis=dict(title="rated sound", tickformat=".0%", range=[0, 1.05]),
                          height=360, margin=dict(t=20, b=40), legend=dict(orientation="h", y=-0.25))
        ui.iteration_axis(fig, audited.iteration)
        st.plotly_chart(fig, width="stretch")
        st.caption("Error bars: 95% Wilson score intervals. Hover for counts.")
    adjudicated = int(share.adjudicated.sum())
    st.caption(f"Labels counted: the adjudicated label where a rationale has one ({adjudicated:,} here), otherwise "
               "every auditor's own label, so a rationale two auditors rated counts twice until it is adjudicated. "
               "'audited' is the labels counted, 'audited_items' the rationales they are on.")
    shown = share.assign(sound_share=share.sound_share.map(lambda x: pct(x, 0)), ci=[f"{pct(lo, 0)}–{pct(hi, 0)}" if h else "" for lo, hi, h in
                                                                 zip(share.ci_low, share.ci_high, share.audited)])
    st.dataframe(shown.drop(columns=["ci_low", "ci_high"]).rename(columns={"kept": "kept" if kept_only else "rationales"}),
                 hide_index=True, width="stretch")
    st.download_button("Download the sound-share table (CSV)", share.to_csv(index=False), "sound_share.csv", "text/csv")

    st.subheader("Step verifier vs human ratings")
    table, kappa, n = verifier_agreement(store, run_id)
    left, right = st.columns([3, 1])
    left.dataframe(table, width="stretch")
    right.metric("Cohen's kappa", "—" if math.isnan(kappa) else f"{kappa:.2f}",
                 help="Agreement between 'the filter keeps it' (right answer, steps hold) and 'rated sound', "
                      "beyond chance: 1 perfect, 0 chance, below 0 worse than chance")
    right.caption(f"over {n} labels (counted as for the sound share) of rationales the verifier could check")

    agreement_section(store, run_id)

    st.subheader("Rationales flagged by tag")
    counts = store.audit_counts_by_tag(run_id)
    if counts.empty:
        st.info("No audited rationale has a tag yet.")
    else:
        tag = st.selectbox("Tag", list(counts.tag), key="s_tag",
                           format_func=lambda t: f"{t} ({int(counts.rationales[counts.tag == t].iloc[0])})")
        flagged = store.flagged_by_tag(tag, run_id)
        st.dataframe(flagged, hide_index=True, width="stretch",
                     column_order=["attempt_id", "rating", "predicted_answer", "gold_answer", "question", "rationale", "tag",
                                   "run_id", "iteration", "kind", "note", "auditor", "audited_at"],
                     column_config=ui.column_config(flagged.columns, rationale=st.column_config.TextColumn("Rationale", width="large")))
        st.download_button("Download the flagged list (CSV)", store.flagged_by_tag(None, run_id).to_csv(index=False),
                           "flagged_by_tag.csv", "text/csv")
    st.subheader("Export")
    c = st.columns(2)
    c[0].download_button("Current labels (CSV)", store.audits_table(run_id).to_csv(index=False), "audits.csv", "text/csv")
    c[1].download_button("Every label, with history (CSV)", store.audits_table(run_id, history=True).to_csv(index=False),
                         "audits_history.csv", "text/csv")


def agreement_section(store, run_id) -> None:
    st.subheader("Agreement between auditors")
    result = agreement(store.agreement_labels(run_id))
    if len(store.auditors(run_id)) < 2 or not result.alpha_n:
        st.info("No rationale has labels from two auditors yet: a second auditor can take the *second opinion* queue.")
        return
    left, right = st.columns([3, 1])
    pairs = [{"auditor A": p.a, "auditor B": p.b, "items both rated": p.n, "Cohen's kappa": p.kappa,
              "95% CI": "" if p.ci_low is None else f"{p.ci_low:+.2f} to {p.ci_high:+.2f}"} for p in result.pairs]
    left.dataframe(pairs, hide_index=True, width="stretch", key="s_pairs",
                   column_config={"Cohen's kappa": st.column_config.NumberColumn(format="%+.2f")})
    left.caption("Cohen's kappa per pair on the rationales both rated; 95% interval: a percentile bootstrap over "
                 "those rationales. Adjudicated labels are not counted (they are nobody's independent rating).")
    right.metric("Krippendorff's alpha", "—" if result.alpha is None else f"{result.alpha:.2f}",
                 help="Nominal alpha over every auditor: 1 perfect agreement, 0 what chance gives")
    right.caption(f"over {result.alpha_n} rationales rated by two or more auditors")
    disagreements = store.disagreements(run_id)
    st.markdown(f"**Rated differently: {len(disagreements)}** "
                f"({int(disagreements.adjudicated_rating.notna().sum())} adjudicated); the *to adjudicate* queue holds them.")
    if not disagreements.empty:
        st.dataframe(disagreements, hide_index=True, width="stretch", key="s_disagreements",
                     column_order=["attempt_id", "ratings", "adjudicated_rating", "adjudicated_by", "predicted_answer",
                                   "gold_answer", "question", "rationale", "run_id", "iteration", "kind"],
                     column_config=ui.column_config(disagreements.columns,
                                                    rationale=st.column_config.TextColumn("Rationale", width="large")))

