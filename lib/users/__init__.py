"""People: accounts and admin rights (accounts), password hashing (passwords), throttled
sign-in (signin), the sign-in cookie's settings (cookies)."""
