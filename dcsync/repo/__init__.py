"""One detector's history over any store: reads and the lookup rule, transactions judged by a
commit guard, ancestry, diff, three-way merge, what a transfer carries, and verification.

Layer 3 of docs/architecture.md: knows no workspace, ACL or peer.
"""
