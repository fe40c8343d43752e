"""Pure statistics for the nightly analytics (SAP.md sections 3-7).

pandas, numpy, scipy, statsmodels and lifelines only: no Django, so these modules are tested
without a database. Every function returns plain JSON-safe Python values; anything that cannot
be estimated is `None`, with a `reason` where a whole result is missing.
"""
