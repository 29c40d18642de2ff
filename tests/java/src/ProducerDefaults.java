import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Future;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The producer with nothing set but the bootstrap servers, so with its defaults (idempotence on,
 * acks=all), then a consumer without a group reading every record back.
 *
 * <p>Usage: ProducerDefaults BOOTSTRAP TOPIC PARTITIONS COUNT [COMPRESSION]. Record {@code i} has
 * key {@code key-(i % 20)} and value {@code value-i}.
 */
public final class ProducerDefaults {
    /** How long the consumer may take to read every record back. */
    private static final Duration READ_TIMEOUT = Duration.ofSeconds(30);

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = Integer.parseInt(args[2]);
        int count = Integer.parseInt(args[3]);

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        if (args.length > 4) {
            props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, args[4]);
            // Enough records per batch for the codec to matter.
            props.put(ProducerConfig.LINGER_MS_CONFIG, "50");
        }
        ProducerConfig effective = new ProducerConfig(props);
        System.out.println("producer acks=" + effective.getString(ProducerConfig.ACKS_CONFIG)
                + " enable.idempotence=" + effective.getBoolean(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG)
                + " compression.type=" + effective.getString(ProducerConfig.COMPRESSION_TYPE_CONFIG));

        // Where each record landed: partition -> offset -> value.
        Map<Integer, TreeMap<Long, String>> written = new HashMap<>();
        Map<String, Integer> partitionOfKey = new HashMap<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            List<Future<RecordMetadata>> sends = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                sends.add(producer.send(new ProducerRecord<>(topic, "key-" + (i % 20), "value-" + i)));
            }
            producer.flush();
            long previousOffset[] = new long[partitions];
            java.util.Arrays.fill(previousOffset, -1);
            for (int i = 0; i < count; i++) {
                RecordMetadata metadata = sends.get(i).get();
                int partition = metadata.partition();
                Checks.check(partition >= 0 && partition < partitions, "partition " + partition + " in range");
                // One partition's records are stored in the order they were sent.
                Checks.check(metadata.offset() > previousOffset[partition],
                        "record " + i + " at offset " + metadata.offset() + " after " + previousOffset[partition]);
                previousOffset[partition] = metadata.offset();
                Integer keyPartition = partitionOfKey.putIfAbsent("key-" + (i % 20), partition);
                Checks.check(keyPartition == null || keyPartition == partition, "one partition per key");
                written.computeIfAbsent(partition, p -> new TreeMap<>()).put(metadata.offset(), "value-" + i);
            }
        }
        for (var entry : written.entrySet()) {
            TreeMap<Long, String> offsets = entry.getValue();
            // A fresh topic: each partition's offsets are 0..n-1 with no gap.
            Checks.check(offsets.firstKey() == 0 && offsets.lastKey() == offsets.size() - 1,
                    "partition " + entry.getKey() + " offsets dense from 0: " + offsets.firstKey() + ".." + offsets.lastKey());
            System.out.println("partition " + entry.getKey() + " records " + offsets.size());
        }

        Properties consumerProps = new Properties();
        consumerProps.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        consumerProps.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        int read = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps)) {
            List<TopicPartition> all = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                all.add(new TopicPartition(topic, p));
            }
            consumer.assign(all);
            consumer.seekToBeginning(all);
            Instant deadline = Instant.now().plus(READ_TIMEOUT);
            while (read < count) {
                Checks.check(Instant.now().isBefore(deadline), "read " + count + " records within " + READ_TIMEOUT + " (read " + read + ")");
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    String expected = written.getOrDefault(record.partition(), new TreeMap<>()).get(record.offset());
                    Checks.check(record.value().equals(expected),
                            "partition " + record.partition() + " offset " + record.offset() + " holds " + expected + ", read " + record.value());
                    read++;
                }
            }
            for (TopicPartition partition : all) {
                long expectedEnd = written.containsKey(partition.partition()) ? written.get(partition.partition()).size() : 0;
                Checks.check(consumer.position(partition) == expectedEnd, partition + " position " + expectedEnd);
            }
        }
        System.out.println("consumed " + read);
        System.out.println("ProducerDefaults ok");
    }
}
