import java.time.Duration;
import java.time.Instant;
import java.util.function.BooleanSupplier;

/** What the interop programs share: checks that fail the program with a message, and bounded waits. */
final class Checks {
    private Checks() {}

    /** Fails the program (exit 1 through the uncaught exception) when {@code condition} is false. */
    static void check(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError("check failed: " + what);
        }
    }

    /** Polls {@code condition} every 20 ms until it holds; fails once {@code timeout} has passed. */
    static void waitUntil(Duration timeout, String what, BooleanSupplier condition) throws InterruptedException {
        Instant deadline = Instant.now().plus(timeout);
        while (!condition.getAsBoolean()) {
            check(Instant.now().isBefore(deadline), what + " within " + timeout);
            Thread.sleep(20);
        }
    }
}
