package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Replies, mentions, edits and "delete for everyone" through the Java API (issue 18) on the
 * real library and Synapse: olga sends in an encrypted room, paul — his sync thread running —
 * replies, olga sees what the reply answers; olga edits, paul's listener hears
 * {@link Listener#onEdited} and his timeline lists one message with the new text; olga
 * deletes it, paul's listener hears {@link Listener#onRedacted} and his timeline keeps a
 * tombstone without text. The refusals reach Java with their codes; a reason in clear goes out
 * only where the configuration allows it. Users: olga (index 14) and paul (index 15), used by
 * no other test class.
 */
public class RelationsTest {
    private static final long TIMEOUT_SECONDS = 60;

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    private static SecureClient login(TestEnv.User user, String name, byte[] config)
            throws Exception {
        SecureClient c = SecureClient.open(config, TestEnv.newDataDir(name),
                TestEnv.mainBinder());
        try {
            c.login(user.localpart, user.password(), "jvm-" + name);
            TestEnv.holdIdentity(c, user);
        } catch (Exception | Error e) {
            c.close();
            throw e;
        }
        return c;
    }

    private static void assertCode(String code, Call call) throws Exception {
        try {
            call.run();
            fail("expected TchapSecureException " + code);
        } catch (TchapSecureException e) {
            assertEquals(e.getMessage(), code, e.getCode());
        }
    }

    private interface Call {
        void run() throws Exception;
    }

    /**
     * An encrypted room created by {@code a} with {@code b} joined, both stores knowing it, and
     * {@code b}'s one-time keys uploaded (so that {@code a}'s room key can reach him).
     */
    private static String room(SecureClient a, SecureClient b) throws Exception {
        String roomId = a.createRoom(null, b.session().userId());
        b.join(roomId);
        TestEnv.await("the creator sees the other member joined", TIMEOUT_SECONDS, () -> {
            a.syncOnce(0);
            for (Room r : a.rooms()) {
                if (r.roomId().equals(roomId) && r.joinedMembers() == 2) {
                    return true;
                }
            }
            return false;
        });
        b.syncOnce(0);
        return roomId;
    }

    /** The message {@code eventId} as {@code c}'s timeline lists it, or null. */
    private static Message find(SecureClient c, String roomId, String eventId)
            throws TchapSecureException {
        for (Message m : c.messages(roomId, 100)) {
            if (m.eventId().equals(eventId)) {
                return m;
            }
        }
        return null;
    }

    /** Syncs {@code c} until its timeline shows {@code eventId} decrypted. */
    private static Message receive(SecureClient c, String roomId, String eventId)
            throws Exception {
        return TestEnv.await("message " + eventId, TIMEOUT_SECONDS, () -> {
            c.syncOnce(0);
            Message m = find(c, roomId, eventId);
            return m != null && m.isDecrypted() ? m : null;
        });
    }

    /** How many messages of {@code c}'s timeline show {@code body}. */
    private static int showing(SecureClient c, String roomId, String body)
            throws TchapSecureException {
        int n = 0;
        for (Message m : c.messages(roomId, 100)) {
            if (body.equals(m.body())) {
                n++;
            }
        }
        return n;
    }

    /** Records onMessage, onEdited and onRedacted by event id. */
    private static final class RelationsListener implements Listener {
        final Set<String> messaged = ConcurrentHashMap.newKeySet();
        final Map<String, Message> edited = new ConcurrentHashMap<>();
        final Map<String, String> editedRoom = new ConcurrentHashMap<>();
        final Map<String, List<String>> redacted = new ConcurrentHashMap<>();
        final Queue<String> problems = new ConcurrentLinkedQueue<>();

        @Override
        public void onMessage(String roomId, String eventId, String sender,
                String senderDisplayName, String body, String trust) {
            messaged.add(eventId);
        }

        @Override
        public void onEdited(String roomId, Message message) {
            if (!messaged.contains(message.eventId())) {
                problems.add("onEdited before onMessage: " + message);
            }
            editedRoom.put(message.eventId(), roomId);
            edited.put(message.eventId(), message);
        }

        @Override
        public void onRedacted(String roomId, String eventId, String redactedBy) {
            redacted.put(eventId, List.of(roomId, redactedBy));
        }

        @Override
        public void onSecurityEvent(String kind, String roomId, String userId, String detail) {
            if (kind.equals("edit_refused") || kind.equals("redaction_refused")) {
                problems.add("security event " + kind + ": " + detail);
            }
        }

        @Override
        public void onSyncState(String state, String errorCode) {
            if ("failed".equals(state)) {
                problems.add("sync failed: " + errorCode);
            }
        }
    }

    @Test
    public void aReplyAnEditAndADeletionReachTheOtherMember() throws Exception {
        TestEnv.User olga = TestEnv.users().get(14);
        TestEnv.User paul = TestEnv.users().get(15);
        try (SecureClient a = login(olga, "rel-olga", TestEnv.config());
                SecureClient b = login(paul, "rel-paul", TestEnv.config())) {
            String olgaId = a.session().userId();
            String roomId = room(a, b);
            RelationsListener listener = new RelationsListener();
            b.startSync(listener);

            String first = "Ordre du jour, version 1 " + System.nanoTime();
            String eventId = a.send(roomId, first);
            TestEnv.await("paul's onMessage", TIMEOUT_SECONDS,
                    () -> listener.messaged.contains(eventId));
            Message original = find(b, roomId, eventId);
            assertEquals(first, original.body());
            assertNull(original.replyTo());
            assertFalse(original.edited());

            // A reply: both sides know what it answers.
            String answer = "Bien reçu, je relis " + System.nanoTime();
            String replyId = b.reply(roomId, eventId, answer);
            assertEquals("paul's own echo", eventId, find(b, roomId, replyId).replyTo());
            Message reply = receive(a, roomId, replyId);
            assertEquals(answer, reply.body());
            assertEquals(eventId, reply.replyTo());
            assertFalse(reply.edited());
            assertTrue(reply.toString(), reply.toString().contains("reply to " + eventId));

            // A mention travels in the encrypted m.mentions: olga's push rules highlight it by
            // her user id, though the text does not name her; an empty list highlights nothing.
            String mentionId = b.send(roomId, "Peux-tu confirmer ?", List.of(olgaId));
            assertTrue("a mention by id highlights",
                    a.notification(roomId, mentionId).highlight());
            String plainId = b.send(roomId, "Pour information.", Collections.emptyList());
            assertFalse("no mention, no highlight", a.notification(roomId, plainId).highlight());

            // An edit: shown at once on olga's side, through onEdited on paul's.
            String second = "Ordre du jour, version 2 " + System.nanoTime();
            String editId = a.edit(roomId, eventId, second);
            Message mine = find(a, roomId, eventId);
            assertEquals(second, mine.body());
            assertTrue(mine.edited());
            assertNull("an edit is no message of its own", find(a, roomId, editId));
            Message edited = TestEnv.await("paul's onEdited", TIMEOUT_SECONDS,
                    () -> listener.edited.get(eventId));
            assertEquals(roomId, listener.editedRoom.get(eventId));
            assertEquals(second, edited.body());
            assertTrue(edited.edited());
            assertTrue(edited.isDecrypted());
            assertEquals(olgaId, edited.sender());
            assertFalse("the body stays out of toString", edited.toString().contains(second));
            assertEquals("one message shows the new text", 1, showing(b, roomId, second));
            assertEquals("the former text is gone", 0, showing(b, roomId, first));
            assertNull("an edit is no message of its own", find(b, roomId, editId));
            assertEquals(edited, find(b, roomId, eventId));

            // Deleted for everyone: erased on olga's side before redact returns, then on paul's.
            Deletion deletion = a.redact(roomId, eventId);
            assertEquals(deletion.toString(), Deletion.State.SENT, deletion.state());
            assertNotNull("the redaction's event id", deletion.id());
            assertNull(deletion.reason());
            Message erased = find(a, roomId, eventId);
            assertTrue(erased.toString(), erased.isRedacted());
            assertNull(erased.body());
            List<String> redacted = TestEnv.await("paul's onRedacted", TIMEOUT_SECONDS,
                    () -> listener.redacted.get(eventId));
            assertEquals(List.of(roomId, olgaId), redacted);
            Message tombstone = find(b, roomId, eventId);
            assertEquals(Message.REDACTED, tombstone.state());
            assertTrue(tombstone.isRedacted());
            assertNull(tombstone.body());
            assertNull(tombstone.attachment());
            assertEquals(0, showing(b, roomId, second));
            // The reply stays, still saying what it answered.
            assertEquals(eventId, find(b, roomId, replyId).replyTo());
            assertEquals(answer, find(b, roomId, replyId).body());

            b.stopSync();
            assertTrue(listener.problems.toString(), listener.problems.isEmpty());
        }
    }

    @Test
    public void refusalsAreTypedAndChangeNothing() throws Exception {
        TestEnv.User olga = TestEnv.users().get(14);
        TestEnv.User paul = TestEnv.users().get(15);
        try (SecureClient a = login(olga, "rel-rules-olga", TestEnv.config());
                SecureClient b = login(paul, "rel-rules-paul", TestEnv.config())) {
            String roomId = room(a, b);
            String text = "Message d'Olga " + System.nanoTime();
            String eventId = a.send(roomId, text);
            receive(b, roomId, eventId);

            // Paul (no power level) may neither edit nor delete olga's message.
            assertCode("edit_not_allowed", () -> b.edit(roomId, eventId, "falsifié"));
            assertCode("redaction_not_allowed", () -> b.redact(roomId, eventId));
            // A reason would travel in clear: refused under the default configuration.
            assertCode("reason_in_clear_refused",
                    () -> a.redact(roomId, eventId, "mauvais salon"));
            try {
                a.redact(roomId, eventId, null);
                fail("a null reason");
            } catch (NullPointerException expected) {
                // redact(roomId, eventId) is the form without a reason
            }
            String server = TestEnv.prop("tchap.serverName");
            String unknown = "$inconnu" + System.nanoTime() + ":" + server;
            assertCode("unknown_event", () -> a.edit(roomId, unknown, "x"));
            assertCode("unknown_event", () -> b.reply(roomId, unknown, "x"));
            assertCode("unknown_event", () -> a.redact(roomId, unknown));
            // Nothing changed, on either side.
            assertEquals(text, find(a, roomId, eventId).body());
            assertEquals(text, find(b, roomId, eventId).body());
            assertFalse(find(b, roomId, eventId).edited());

            // Once deleted, it can be neither edited, answered nor deleted again.
            assertEquals(Deletion.State.SENT, a.redact(roomId, eventId).state());
            assertCode("event_redacted", () -> a.edit(roomId, eventId, "trop tard"));
            assertCode("event_redacted", () -> a.reply(roomId, eventId, "trop tard"));
            assertCode("event_redacted", () -> a.redact(roomId, eventId));
        }
    }

    @Test
    public void aReasonGoesOutWhereTheConfigurationAllowsIt() throws Exception {
        TestEnv.User olga = TestEnv.users().get(14);
        TestEnv.User paul = TestEnv.users().get(15);
        byte[] allowing = TestEnv.configWith("\"redaction_reason_in_clear\": true");
        try (SecureClient a = login(olga, "rel-reason-olga", allowing);
                SecureClient b = login(paul, "rel-reason-paul", TestEnv.config())) {
            String roomId = room(a, b);
            String text = "Envoyé dans le mauvais salon " + System.nanoTime();
            String eventId = a.send(roomId, text);
            receive(b, roomId, eventId);
            Deletion deletion = a.redact(roomId, eventId, "mauvais salon");
            assertEquals(deletion.toString(), Deletion.State.SENT, deletion.state());
            assertNotNull(deletion.id());
            Message gone = TestEnv.await("the deletion on paul's side", TIMEOUT_SECONDS, () -> {
                b.syncOnce(0);
                Message m = find(b, roomId, eventId);
                return m != null && m.isRedacted() ? m : null;
            });
            assertNull(gone.body());
        }
    }
}
