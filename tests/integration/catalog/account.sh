#!/bin/bash
# scmctl account: wrong credentials are refused with SCM's message and save
# nothing; a non-MRAO account is refused; the password never comes from
# argv and is stored sealed; show never prints it.
CT_NAME=catacct
. "$(dirname "$0")/lib.sh"
ct_setup
ct_sim

out=$(printf 'wrong-password\n' | "$SCMCTL" account set --login "$CT_LOGIN" --customer-uri "$CT_CUSTOMER" \
      --base-url "$CT_SIM" --password-stdin 2>&1) && ct_fail "wrong password accepted: $out"
grep -q "Unknown user" <<<"$out" || ct_fail "SCM's message not shown: $out"
[ "$(ct_sql "select count(*) from scm_accounts")" = 0 ] || ct_fail "wrong credentials saved something"
ct_ok "wrong credentials refused: $out"

out=$(printf 'Drao-Passw0rd!\n' | "$SCMCTL" account set --name drao --login drao_user --customer-uri "$CT_CUSTOMER" \
      --base-url "$CT_SIM" --password-stdin 2>&1) && ct_fail "non-MRAO accepted: $out"
grep -q "not an MRAO" <<<"$out" || ct_fail "non-MRAO message: $out"
[ "$(ct_sql "select count(*) from scm_accounts")" = 0 ] || ct_fail "non-MRAO saved"
ct_ok "non-MRAO refused"

"$SCMCTL" account set --login "$CT_LOGIN" --customer-uri "$CT_CUSTOMER" --password "$CT_PASSWORD" >/dev/null 2>&1
[ $? -eq 2 ] || ct_fail "--password on the command line must be a usage error"

printf '%s\n' "$CT_PASSWORD" > "$CT_DIR/pw"
"$SCMCTL" account set --name main --login "$CT_LOGIN" --customer-uri "$CT_CUSTOMER" --base-url "$CT_SIM" \
    --password-file "$CT_DIR/pw" > "$CT_DIR/set.out" 2>&1 || ct_fail "account set: $(cat "$CT_DIR/set.out")"
sealed=$(ct_sql "select password_sealed from scm_accounts where name='main'")
[[ $sealed == v1.*.* ]] || ct_fail "password not sealed: ${sealed:0:10}..."
grep -qF "$CT_PASSWORD" <<<"$sealed" && ct_fail "plain password stored"
[ "$(ct_sql "select is_default::text || is_mrao::text from scm_accounts where name='main'")" = truetrue ] || ct_fail "default/MRAO flags"
show=$("$SCMCTL" account show main; "$SCMCTL" account show --json; "$SCMCTL" account list)
grep -qF "$CT_PASSWORD" <<<"$show" && ct_fail "show printed the password"
grep -qF "$sealed" <<<"$show" && ct_fail "show printed the sealed token"
[ "$("$SCMCTL" account show --json | jq -r .login)" = "$CT_LOGIN" ] || ct_fail "account show --json"
grep -qF "$CT_PASSWORD" "$CT_DIR"/*.out && ct_fail "password in output"
# A second account side by side; the default stays unless asked.
"$SCMCTL" account set --name second --login "$CT_LOGIN" --customer-uri "$CT_CUSTOMER" --base-url "$CT_SIM" \
    --password-file "$CT_DIR/pw" >/dev/null 2>&1 || ct_fail "second account"
[ "$(ct_sql "select name from scm_accounts where is_default")" = main ] || ct_fail "default changed"
"$SCMCTL" account default second >/dev/null || ct_fail "account default"
[ "$(ct_sql "select name from scm_accounts where is_default")" = second ] || ct_fail "default not moved"
[ "$("$SCMCTL" account list --json | jq length)" = 2 ] || ct_fail "account list"
ct_ok "account saved sealed, shown without the password, several side by side"
