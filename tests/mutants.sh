#!/usr/bin/env bash
# Mutation testing of the security-critical functions (issues 15 item 10, 16 to 19), with cargo-mutants.
#
# Every mutant of the functions below must be caught ("caught" or "unviable"); a "missed" one is
# a missing test. Too slow for the CI path (each mutant is a rebuild and a test run: about an
# hour on 2 cores for all groups), so it is run by hand and its summary committed:
#
#     tests/mutants.sh            # all groups
#     tests/mutants.sh files hsm  # some groups
#
# writes mutants.out/<group>/ under $MUTANTS_OUT (default /tmp/tchap-secure-mutants) and prints
# the table that goes into tests/mutants/RESULTS.md. It mutates the source tree IN PLACE: run it
# in a clean checkout or worktree of its own (cargo-mutants restores each file after each
# mutant), with its own target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tchap-secure/target-mutants}"
out="${MUTANTS_OUT:-/tmp/tchap-secure-mutants}"
mkdir -p "$out"
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants@27.1.0

# The end-to-end tests run the CLI binary: in this mode it must be the mutated one, so they get
# a wrapper that rebuilds it from the (mutated) tree first.
cli_wrapper="$out/tchap-secure-cli"
cat >"$cli_wrapper" <<WRAP
#!/usr/bin/env bash
cargo build -q --manifest-path "$root/Cargo.toml" -p tchap-secure 2>/dev/null || exit 101
exec "$CARGO_TARGET_DIR/debug/tchap-secure" "\$@"
WRAP
chmod +x "$cli_wrapper"

run() { # group, cargo-mutants arguments…
    local group=$1
    shift
    echo "=== $group" >&2
    rm -rf "${out:?}/$group"
    cargo mutants --in-place --no-shuffle --timeout "${MUTANTS_TIMEOUT:-150}" --output "$out/$group" "$@" || true
}

group_crypto() {
    # Megolm replay, sender and room-id binding, trust of the sender; Olm sender binding and
    # pre-key replay; the sync's refusal of clear messages and its Megolm path.
    run crypto -p tchap-secure-core \
        --file native/core/src/crypto/megolm.rs --file native/core/src/crypto/olm.rs \
        --file native/core/src/client/sync.rs \
        --re 'Engine::megolm_decrypt|Engine::receive_room_key|Engine::trust_of|Engine::olm_decrypt|Engine::olm_plaintext|decrypt_room_event|apply_message_event' \
        -- --lib -- crypto:: client:: proptests::
}

group_tofu() {
    # Device keys: self-signature, TOFU pinning, the block on a changed key.
    run tofu -p tchap-secure-core --file native/core/src/crypto/devices.rs \
        --re 'validate_device|in apply$' -- --lib -- crypto::
}

group_files() {
    # The EncryptedFile hash check before any plaintext; the scanner key pinning and its
    # configuration; the pins that count.
    run files -p tchap-secure-core \
        --file native/core/src/media/attachment.rs --file native/core/src/media/scanner.rs \
        --file native/core/src/config.rs \
        --re 'verify_ciphertext|digest_matches|decrypt_to|check_pinned_key|ScannerKeyCache::store|fetch_pinned_key|parse_scanner_keys|parse_pins|pins_that_count' \
        -- --lib
}

group_clock() {
    # The trusted time (pin expiry's clock) and its floor in the store.
    run clock -p tchap-secure-core \
        --file native/core/src/net/clock.rs --file native/core/src/store/session.rs \
        --re 'TrustedClock|in later|in shifted|trusted_time' -- --lib
}

group_hsm() {
    # Vault file parsing, AAD binding, unwrap, wipe. (cargo-mutants names a trait method
    # `<impl KeyVault for Pkcs11Vault>::wrap` and a generic one `VaultFile<'a>::parse`: the
    # patterns must match those names, else the functions are silently left out.)
    run hsm -p tchap-secure-hsm \
        --file hsm/src/vault.rs --file hsm/src/pkcs11.rs \
        --re 'aad|VaultFile.*::parse|Vault::open|Vault::wipe|read_kek_id|remove_placed|kek_id_of_damaged|Pkcs11Vault>::unwrap|Pkcs11Vault>::wrap|encode_binding|settled'
}

group_trust() {
    # Issue 16's trust rules: the identity pinned at first sight, a change, a forged or
    # unsigned key, the trust shown, who gets room keys, an acknowledged change; the SAS
    # commitment, MACs and accept checks.
    run trust -p tchap-secure-core \
        --file native/core/src/crypto/cross_signing.rs --file native/core/src/crypto/verification/sas.rs \
        --re 'apply_identity|signed_by|cross_signing_key|sharing_refusal|device_trust|acknowledge_change|trusted_own_user_signing|commitment|sas_info|mac_info|verify_mac_content|check_accept' \
        -- --lib -- crypto::
}

group_notify() {
    # Issue 17's notification path: a to-device message applied once (digest, the path that
    # applied it, a replay on the same path), its own position and the deferred reports, the
    # Olm account read again under the write lock when another process committed, the ids
    # checked before any request, a file never shown by its name.
    run notify -p tchap-secure-core \
        --file native/core/src/store/notify.rs --file native/core/src/store/mod.rs \
        --file native/core/src/crypto/engine.rs --file native/core/src/client/notification.rs \
        --re 'to_device_digest|first_delivery|prune_seen|take_deferred|in defer$|transaction_seeing|Engine::refresh|check_event_id|kind_of' \
        -- --lib
}

group_relations() {
    # Issue 18's rules: which edit is shown (sender, room, not an edit, not deleted, the
    # latest), who may delete, what an erasure leaves, the log truncation after it, the
    # message lifetime (the smaller, the floor) and its purge, the read position.
    run relations -p tchap-secure-core \
        --file native/core/src/client/relations.rs --file native/core/src/store/relations.rs \
        --file native/core/src/store/retention.rs --file native/core/src/store/receipts.rs \
        --file native/core/src/store/mod.rs \
        --re 'Relation::of|edit_refusal|try_edit|redaction_refusal|judge|apply_redaction|apply_early_redaction|in erase$|show_edit|effective_ms|in purge$|in expired$|next_expiry|advance_read|unread_messages|checkpoint_erasure' \
        -- --lib
}

group_identity() {
    # Issue 19's rules: what locks the account and whether it is shredded, the lock enforced
    # and kept, the e-mail address checked, the lookup hash, a direct chat reused only where
    # both are members. (The display-name parser was run on its own when written: 93 mutants,
    # none missed, tests/mutants/RESULTS.md; the identity server's answers — `lookup_with` —
    # are exercised against the real Sydent by the end-to-end tests only.)
    run identity -p tchap-secure-core \
        --file native/core/src/client/account.rs --file native/core/src/client/directory.rs \
        --file native/core/src/client/direct.rs --file native/core/src/client/uia.rs \
        --re 'AccountLock::of|AccountLock::parse|judge_failure|must_shred|ensure_unlocked|stored_lock|set_lock|canonical_email|lookup_hash|parse_direct|apply_direct|direct_room_with' \
        -- --lib -- client::
}

group_push_rules() {
    # Issue 17's push-rule evaluator, its deciding part: a condition holds or not (event_match
    # globs on words or whole values, the display name, member counts, the sender's power
    # level, mentions), a rule matches, the first matching rule decides; against the
    # evaluator's own unit and property tests. (The rules' parsing — from_account_data,
    # Actions::parse, Condition::try_parse — is checked by the same tests but not mutated here.)
    run push_rules -p tchap-secure-core --file native/core/src/push_rules.rs \
        --re 'Condition::holds|Rule::matches|PushRules::evaluate|Glob::matches_words|Glob::matches_whole|starts_word|is_word_char|notification_level|parse_member_count|Scalar::equals_json|Path::is' \
        -- --lib -- push_rules
}

group_pinning() {
    # The pin check inside the verified-path callback, pin expiry (per handshake and per
    # request), anchor pins, no resumption. Killed by the end-to-end transport and bad-input
    # tests (real TLS peers on loopback, the real Synapse, the mutated CLI). No `-p`: with it
    # cargo-mutants 27.1 runs the mutated package's tests (`tchap-secure-core` has no `e2e`
    # target); `--test-package` makes it run the testbed package's for each mutant, but its
    # baseline still runs the mutated package's — so the baseline is run here, by hand, and
    # cargo-mutants' skipped.
    local tests=(--test e2e -- transport:: bad_input::)
    echo "=== pinning: baseline (unmutated tree)" >&2
    cargo build -q -p tchap-secure
    TCHAP_SECURE_CLI="$cli_wrapper" cargo test -q -p tchap-secure-tests "${tests[@]}"
    TCHAP_SECURE_CLI="$cli_wrapper" run pinning --baseline skip \
        --file native/core/src/net/pinning.rs --file native/core/src/net/transport.rs \
        --re 'verify_server_cert|path_pins|check_pin_expiry|anchor_pin|wrap_der_sequence|Transport::check_pins|tls_config|from_pin_rejection' \
        --test-package tchap-secure-tests \
        -- "${tests[@]}"
}

group_pinning_unit() {
    # The same functions against the core's unit tests (DER lengths, pins of an anchor, the
    # TLS policy): a mutant of the pinning code is caught if this group or `pinning` catches it.
    run pinning_unit -p tchap-secure-core \
        --file native/core/src/net/pinning.rs --file native/core/src/net/transport.rs \
        --re 'verify_server_cert|path_pins|check_pin_expiry|anchor_pin|wrap_der_sequence|Transport::check_pins|tls_config|from_pin_rejection' \
        -- --lib
}

groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=(files clock hsm crypto tofu trust notify relations identity pinning pinning_unit)
for g in "${groups[@]}"; do "group_$g"; done

# The summary table (tests/mutants/RESULTS.md).
echo
echo "| group | caught | missed | unviable | timeout |"
echo "|---|---|---|---|---|"
for g in "${groups[@]}"; do
    d="$out/$g/mutants.out"
    count() { if [[ -f "$d/$1.txt" ]]; then grep -c . "$d/$1.txt" || true; else echo -; fi; }
    echo "| $g | $(count caught) | $(count missed) | $(count unviable) | $(count timeout) |"
done
for g in "${groups[@]}"; do
    d="$out/$g/mutants.out"
    if [[ -s "$d/missed.txt" ]]; then
        echo
        echo "missed in $g:"
        sed 's/^/- /' "$d/missed.txt"
    fi
done
