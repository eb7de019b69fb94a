"""Provides the stores: one module per kind of thing the connector keeps.

Each store wraps one or two tables and is written once for both back-ends (``state.sql``). A
store method is one short statement or a few; composing them into a transaction is the caller's
job (``state.Tx`` groups the stores of one transaction).
"""
