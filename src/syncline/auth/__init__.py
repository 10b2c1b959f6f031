"""Verifying user tokens and admin keys: credentials in, :mod:`syncline.identity` out.

* :mod:`~syncline.auth.providers` -- ``auth_config.py``'s providers, validated;
  issuer normalisation.
* :mod:`~syncline.auth.jwks` -- key sets and key selection.
* :mod:`~syncline.auth.verifier` -- :class:`~syncline.auth.verifier.AuthVerifier`:
  JWT checks, discovery and JWKS fetching and caching.
* :mod:`~syncline.auth.admin_key` -- the deployment's admin key file.
* :mod:`~syncline.auth.credentials` -- ``Authorization`` header and ``Authenticate``
  message to :class:`~syncline.identity.Identity`.

Nothing here is imported by user code; import from the submodule that owns a name.
"""
