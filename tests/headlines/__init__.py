"""Headline regressions: each documented finding's direction, asserted with a margin at a tiny, seeded budget.

One module per system. Each test runs the project's own experiment driver with a small
configuration, asserts the direction of the finding its docstring names (the doc section and the
full-budget command that produced the published number), and states the values measured over
three seeds from which its margin was chosen. Where a finding does not hold at a tiny budget, the
docstring says so and the test asserts the weaker direction that does.
"""
