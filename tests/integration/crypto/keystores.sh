#!/bin/bash
# Keystores written by libscmflow open with the real tools: `openssl pkcs12`
# and `openssl pkey` for PEM/PKCS#12, Java keytool for PKCS#12 and JKS
# (including converting JKS -> PKCS12, which needs the private key to decrypt),
# and the wrong password is refused by each.
#   keystores.sh KS_TOOL WORKDIR
set -u
KS_TOOL=$1
WORK=$2
PW='changeit-Secret1'
fails=0
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

"$KS_TOOL" "$WORK" "$PW" || { echo "FAIL: ks_tool"; exit 1; }

for c in rsa3 ec2 ec384; do
    read -r chainkv _ _ < "$WORK/$c.info"
    chain=${chainkv#chain=}
    leaf_pub=$(openssl x509 -in "$WORK/$c.pem" -pubkey -noout | sha256sum)

    # PEM: key first, then `chain` certificates; the key matches the leaf.
    head -1 "$WORK/$c.pem" | grep -q 'BEGIN PRIVATE KEY' || fail "$c.pem does not start with the key"
    n=$(grep -c 'BEGIN CERTIFICATE' "$WORK/$c.pem")
    [ "$n" = "$chain" ] || fail "$c.pem has $n certificates, want $chain"
    [ "$(openssl pkey -in "$WORK/$c.pem" -pubout | sha256sum)" = "$leaf_pub" ] \
        && ok "$c.pem key matches leaf" || fail "$c.pem key does not match leaf"
    # encrypted PEM
    [ "$(openssl pkey -in "$WORK/$c.enc.pem" -passin "pass:$PW" -pubout | sha256sum)" = "$leaf_pub" ] \
        && ok "$c.enc.pem opens" || fail "$c.enc.pem does not open"
    openssl pkey -in "$WORK/$c.enc.pem" -passin pass:wrong-password -pubout >/dev/null 2>&1 \
        && fail "$c.enc.pem opened with a wrong password" || ok "$c.enc.pem refuses wrong password"

    # PKCS#12 with openssl
    info=$(openssl pkcs12 -info -in "$WORK/$c.p12" -passin "pass:$PW" -noout 2>&1) \
        && ok "$c.p12 opens with openssl" || fail "$c.p12 does not open with openssl: $info"
    echo "$info" | grep -q 'MAC: sha256' || fail "$c.p12 MAC is not sha256"
    echo "$info" | grep -q 'Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC' || fail "$c.p12 key bag not AES-256-CBC"
    echo "$info" | grep -q 'PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC' || fail "$c.p12 cert bag not AES-256-CBC"
    [ "$(openssl pkcs12 -in "$WORK/$c.p12" -passin "pass:$PW" -nocerts -nodes 2>/dev/null | openssl pkey -pubout | sha256sum)" = "$leaf_pub" ] \
        || fail "$c.p12 key does not match leaf"
    openssl pkcs12 -info -in "$WORK/$c.p12" -passin pass:wrong-password -noout >/dev/null 2>&1 \
        && fail "$c.p12 opened with wrong password" || ok "$c.p12 refuses wrong password (openssl)"

    # PKCS#12 and JKS with keytool
    for t in p12:PKCS12 jks:JKS; do
        ext=${t%%:*}; type=${t##*:}
        out=$(keytool -list -v -keystore "$WORK/$c.$ext" -storetype "$type" -storepass "$PW" 2>&1)
        if echo "$out" | grep -q 'Entry type: PrivateKeyEntry' &&
           echo "$out" | grep -q "Certificate chain length: $chain" &&
           echo "$out" | grep -q 'Alias name: server-cert'; then
            ok "$c.$ext keytool sees PrivateKeyEntry, chain $chain"
        else
            fail "$c.$ext keytool: $out"
        fi
        if keytool -list -keystore "$WORK/$c.$ext" -storetype "$type" -storepass wrong-password >/dev/null 2>&1; then
            fail "$c.$ext keytool accepted a wrong password"
        else
            ok "$c.$ext keytool refuses wrong password"
        fi
    done
    # JKS -> PKCS12 with keytool: only works if keytool recovers the key.
    rm -f "$WORK/$c.conv.p12"
    if keytool -importkeystore -noprompt -srckeystore "$WORK/$c.jks" -srcstoretype JKS \
        -srcstorepass "$PW" -destkeystore "$WORK/$c.conv.p12" -deststoretype PKCS12 \
        -deststorepass "$PW" >/dev/null 2>&1 &&
       [ "$(openssl pkcs12 -in "$WORK/$c.conv.p12" -passin "pass:$PW" -nocerts -nodes 2>/dev/null | openssl pkey -pubout | sha256sum)" = "$leaf_pub" ]; then
        ok "$c.jks converts with keytool and the key matches the leaf"
    else
        fail "$c.jks key not recoverable by keytool"
    fi
done

# A tampered JKS is refused by keytool (integrity digest).
cp "$WORK/ec2.jks" "$WORK/tampered.jks"
printf '\x01' | dd of="$WORK/tampered.jks" bs=1 seek=200 conv=notrunc status=none
keytool -list -keystore "$WORK/tampered.jks" -storetype JKS -storepass "$PW" >/dev/null 2>&1 \
    && fail "keytool accepted a tampered JKS" || ok "keytool refuses a tampered JKS"

# The other direction: keystores keytool writes open with our parsers.
for t in jks:JKS p12:PKCS12; do
    ext=${t%%:*}; type=${t##*:}
    keytool -genkeypair -noprompt -alias kt -keyalg EC -groupname secp256r1 -dname CN=keytool.example.com \
        -validity 30 -keystore "$WORK/kt.$ext" -storetype "$type" -storepass "$PW" -keypass "$PW" >/dev/null 2>&1 \
        || fail "keytool -genkeypair $type"
    out=$("$KS_TOOL" "parse-$ext" "$WORK/kt.$ext" "$PW")
    [ "$out" = "key=EC-256 chain=1 match=yes" ] && ok "keytool $type opens with sf_keystore_parse_$ext" \
        || fail "keytool $type via sf_keystore_parse_$ext: $out"
    "$KS_TOOL" "parse-$ext" "$WORK/kt.$ext" wrong-password 2>/dev/null
    [ $? = 3 ] && ok "sf_keystore_parse_$ext refuses wrong password (auth)" || fail "parse_$ext wrong password not refused as auth"
    # and our own files round-trip through our parsers
    out=$("$KS_TOOL" "parse-$ext" "$WORK/rsa3.$ext" "$PW")
    [ "$out" = "key=RSA-2048 chain=3 match=yes" ] && ok "rsa3.$ext round-trips" || fail "rsa3.$ext parse: $out"
done
echo "failures: $fails"
[ "$fails" = 0 ]
