"""A calib directory: its detector files, aliases, fetched copies, remotes and partial-clone
filters, and the rules (ACL, hooks: the policy) it gives every repository it opens.

Layer 4 of docs/architecture.md: knows nothing of sync.
"""
