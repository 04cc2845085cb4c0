"""Wire-level pieces shared by the STS and both API generations: errors, headers, auth, body parsing."""
