import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A consumer group of three Java consumers, each in its own thread, committing after every poll:
 * one member takes every partition, two more join and the partitions are shared out, one leaves
 * and the other two take its partitions over. Every record is read exactly once, by the member
 * that owned its partition, and the committed offsets end at the log end.
 *
 * <p>Usage: GroupMembers BOOTSTRAP TOPIC PARTITIONS PER_PARTITION GROUP. The topic holds
 * PER_PARTITION records in each partition already, value "PARTITION:INDEX" at offset INDEX; the
 * program adds ROUND more per partition after each membership change.
 */
public final class GroupMembers {
    /** How long a membership change may take to settle (a rebalance with every member rejoining). */
    private static final Duration SETTLE_TIMEOUT = Duration.ofSeconds(60);
    /** Records produced to each partition after each membership change. */
    private static final int ROUND = 10;

    /** Every delivery so far: "partition:offset" -> the member that read it. */
    private static final Map<String, String> READ_BY = new ConcurrentHashMap<>();
    private static final AtomicInteger DUPLICATES = new AtomicInteger();

    static final class Member extends Thread {
        private final Properties props;
        private final String topic;
        volatile Set<TopicPartition> assignment = Set.of();
        final AtomicInteger rebalances = new AtomicInteger();
        volatile boolean stopping;
        volatile Throwable failure;

        Member(String name, Properties props, String topic) {
            super(name);
            this.props = props;
            this.topic = topic;
        }

        @Override
        public void run() {
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(java.util.Collection<TopicPartition> partitions) {
                        // Nothing to commit: every poll's records are committed before the next poll.
                    }

                    @Override
                    public void onPartitionsAssigned(java.util.Collection<TopicPartition> partitions) {
                        rebalances.incrementAndGet();
                        System.out.println(getName() + " assigned " + partitions);
                    }
                });
                while (!stopping) {
                    var records = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<String, String> record : records) {
                        String expected = record.partition() + ":" + record.offset();
                        Checks.check(record.value().equals(expected),
                                getName() + " read " + record.value() + " at " + expected);
                        if (READ_BY.putIfAbsent(expected, getName()) != null) {
                            DUPLICATES.incrementAndGet();
                        }
                    }
                    if (!records.isEmpty()) {
                        consumer.commitSync();
                    }
                    assignment = Set.copyOf(consumer.assignment());
                }
                assignment = Set.of();
            } catch (Throwable t) {
                failure = t;
            }
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = Integer.parseInt(args[2]);
        int perPartition = Integer.parseInt(args[3]);
        String group = args[4];

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        // Rebalances noticed within half a second rather than the default three.
        props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");

        List<Member> members = new ArrayList<>();
        for (int i = 1; i <= 3; i++) {
            members.add(new Member("member-" + i, props, topic));
        }
        int total = partitions * perPartition;

        // One member: it owns every partition and reads every record.
        members.get(0).start();
        waitForAssignment(members.subList(0, 1), partitions);
        waitForRead(total);
        System.out.println("one member read " + READ_BY.size());

        // Two more join: the partitions are shared out among the three.
        members.get(1).start();
        members.get(2).start();
        waitForAssignment(members, partitions);
        total += produceRound(bootstrap, topic, partitions, perPartition);
        waitForRead(total);
        checkReadByOwners(members, perPartition, perPartition + ROUND);
        System.out.println("three members read " + READ_BY.size());

        // One leaves: the other two take its partitions over, from its committed offsets.
        Member leaving = members.get(2);
        leaving.stopping = true;
        leaving.join(SETTLE_TIMEOUT.toMillis());
        Checks.check(!leaving.isAlive(), "member-3 closed");
        List<Member> staying = members.subList(0, 2);
        waitForAssignment(staying, partitions);
        total += produceRound(bootstrap, topic, partitions, perPartition + ROUND);
        waitForRead(total);
        checkReadByOwners(staying, perPartition + ROUND, perPartition + 2 * ROUND);
        System.out.println("two members read " + READ_BY.size());

        for (Member member : staying) {
            member.stopping = true;
        }
        for (Member member : members) {
            member.join(SETTLE_TIMEOUT.toMillis());
            Checks.check(member.failure == null, member.getName() + " failed: " + member.failure);
            Checks.check(member.rebalances.get() >= 1, member.getName() + " was assigned partitions");
        }
        Checks.check(DUPLICATES.get() == 0, "no record read twice, " + DUPLICATES.get() + " were");

        // What the group committed, as an operator would look it up.
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(adminProps)) {
            Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            Checks.check(committed.size() == partitions, "committed offsets for every partition: " + committed);
            for (var entry : committed.entrySet()) {
                Checks.check(entry.getValue().offset() == perPartition + 2 * ROUND,
                        entry.getKey() + " committed at the log end: " + entry.getValue());
            }
        }
        System.out.println("GroupMembers ok read=" + READ_BY.size());
    }

    /** Waits until the running `members` own every partition between them, each some, none twice. */
    private static void waitForAssignment(List<Member> members, int partitions) throws InterruptedException {
        Checks.waitUntil(SETTLE_TIMEOUT, "partitions shared by " + members.size() + " members", () -> {
            Set<TopicPartition> union = new HashSet<>();
            int sum = 0;
            for (Member member : members) {
                Checks.check(member.failure == null, member.getName() + " failed: " + member.failure);
                Set<TopicPartition> owned = member.assignment;
                if (owned.isEmpty()) {
                    return false;
                }
                union.addAll(owned);
                sum += owned.size();
            }
            return union.size() == partitions && sum == partitions;
        });
        for (Member member : members) {
            System.out.println(member.getName() + " owns " + member.assignment);
        }
    }

    private static void waitForRead(int total) throws InterruptedException {
        Checks.waitUntil(SETTLE_TIMEOUT, total + " records read", () -> READ_BY.size() >= total);
    }

    /** Each record at offsets [from, to) was read by the member that owns its partition now. */
    private static void checkReadByOwners(List<Member> members, int from, int to) {
        for (Member member : members) {
            for (TopicPartition partition : member.assignment) {
                for (int offset = from; offset < to; offset++) {
                    String key = partition.partition() + ":" + offset;
                    Checks.check(member.getName().equals(READ_BY.get(key)),
                            key + " read by its owner " + member.getName() + ", not " + READ_BY.get(key));
                }
            }
        }
    }

    /** Appends ROUND records to every partition, values "PARTITION:OFFSET" from `first` on. */
    private static int produceRound(String bootstrap, String topic, int partitions, int first) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int p = 0; p < partitions; p++) {
                for (int i = first; i < first + ROUND; i++) {
                    var metadata = producer.send(new ProducerRecord<>(topic, p, null, p + ":" + i)).get();
                    Checks.check(metadata.offset() == i, "record " + p + ":" + i + " at offset " + metadata.offset());
                }
            }
        }
        return partitions * ROUND;
    }
}
