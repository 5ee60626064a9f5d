<?php
/**
 * SQL capture against a real, throwaway PostgreSQL cluster: the PDO
 * subclass, the Phalcon listener (through a stand-in, see
 * fixtures/PhalconStandIn.php), application_name tagging seen from
 * pg_stat_activity, bound-value redaction, the per-request cap and trimming.
 */

namespace BitvilleApm\Tests;

final class PostgresTest extends AgentTestCase
{
    /** @var PgCluster */
    private $pg;

    protected function setUp(): void
    {
        $pg = PgCluster::shared();
        if (!$pg instanceof PgCluster) {
            $this->fail('throwaway PostgreSQL cluster: ' . $pg);
        }
        $this->pg = $pg;
    }

    private function connectCode($class = '\BitvilleApm\Pdo')
    {
        return '$db = new ' . $class . '(' . var_export($this->pg->dsn(), true) . ', "postgres", null, '
            . '[PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);' . "\n";
    }

    public function testApplicationNameCarriesCorrelationIdWhileQueryRuns()
    {
        $env = $this->setUpAgent();
        $dir = $this->tempDir();
        file_put_contents($dir . '/s.php', "<?php\n" . $this->connectCode()
            . 'echo bitville_apm_get_correlation_id(), "\n"; $db->query("SELECT pg_sleep(2)")->fetchAll();');
        $cmd = [PHP_BINARY];
        foreach ($this->phpIni() as $k => $v) {
            array_push($cmd, '-d', "$k=$v");
        }
        $cmd[] = $dir . '/s.php';
        $proc = proc_open($cmd, [1 => ['file', $dir . '/out', 'w'], 2 => ['file', $dir . '/err', 'w']], $pipes, null,
            array_merge(getenv(), ['BITVILLE_APM_CONFIG' => $env['config']]));
        $watcher = new \PDO($this->pg->dsn(), 'postgres');
        $seen = [];
        for ($i = 0; $i < 150 && proc_get_status($proc)['running']; $i++) {
            $rows = $watcher->query("SELECT application_name, query FROM pg_stat_activity WHERE state = 'active'"
                . " AND query LIKE '%pg_sleep(2)%' AND pid <> pg_backend_pid()")->fetchAll(\PDO::FETCH_ASSOC);
            if ($rows !== []) {
                $seen = $rows;
                break;
            }
            usleep(20000);
        }
        while (proc_get_status($proc)['running']) {
            usleep(20000);
        }
        proc_close($proc);
        $cid = trim((string) file_get_contents($dir . '/out'));
        $this->assertSame('', file_get_contents($dir . '/err'));
        $this->assertNotEmpty($seen, 'the query was never seen running');
        $this->assertSame('bitville:' . $cid, $seen[0]['application_name']);
        $records = $this->spoolRecords($env['spool']);
        $queries = $records[0]['sql']['queries'];
        $this->assertCount(1, $queries, 'the SET is not recorded');
        $this->assertSame('SELECT pg_sleep(?)', $queries[0]['sql'], 'literals are replaced by default');
        $this->assertGreaterThanOrEqual(1900, $queries[0]['duration_ms']);
    }

    public function testPdoCapturesQueryExecAndExecuteWithRedactedBoundValues()
    {
        $env = $this->setUpAgent(['profiling' => ['sql_comment' => 'true']]);
        $code = $this->connectCode() . <<<'PHP'
function load_user($db) {
    $s = $db->prepare('SELECT $1::text AS name WHERE $2::text = $2::text');
    $s->bindValue(1, 'bob');
    $s->bindValue(2, 'SECRET_SQL_POSITIONAL_NOT');
    $s->execute();
    return $s->fetchAll();
}
$db->exec('CREATE TEMP TABLE users (name text, password text)');
$s = $db->prepare('INSERT INTO users (name, password) VALUES (?, ?)');
$s->execute(['bob', 'SECRET_SQL_INSERT']);
$s = $db->prepare('SELECT name FROM users WHERE password = :password');
$s->execute([':password' => 'SECRET_SQL_NAMED']);
$s = $db->prepare('UPDATE users SET password = ? WHERE name = ?');
$s->bindValue(1, 'SECRET_SQL_BOUND');
$s->bindValue(2, 'bob');
$s->execute();
$db->query('SELECT 1')->fetchAll();
load_user($db);
try { $db->query('SELECT * FROM no_such_table'); } catch (PDOException $e) { echo "caught"; }
$db->beginTransaction(); $db->exec('SELECT 2'); $db->rollBack();
PHP;
        $run = $this->runPhp($code, $env['config']);
        $this->assertSilent($run, 'caught');
        $line = (string) file_get_contents(glob($env['spool'] . '/*.ndjson')[0]);
        foreach (['SECRET_SQL_INSERT', 'SECRET_SQL_NAMED', 'SECRET_SQL_BOUND'] as $secret) {
            $this->assertStringNotContainsString($secret, $line);
        }
        $q = $this->spoolRecords($env['spool'])[0]['sql']['queries'];
        $ops = array_column($q, 'op');
        $this->assertSame(['exec', 'execute', 'execute', 'execute', 'query', 'execute', 'query', 'begin', 'exec',
            'rollback'], $ops);
        $this->assertSame(['bob', '[REDACTED]'], $q[1]['params']);
        $this->assertSame([':password' => '[REDACTED]'], $q[2]['params']);
        $this->assertSame(['1' => '[REDACTED]', '2' => 'bob'], $q[3]['params']);
        $this->assertSame('INSERT INTO users (name, password) VALUES (?, ?)', $q[1]['sql'], 'no agent comment in the text');
        $this->assertSame(1, $q[1]['rows']);
        $this->assertSame('failed', $q[6]['status']);
        $this->assertStringContainsString('no_such_table', $q[6]['error']);
        $this->assertSame('ok', $q[5]['status']);
        $this->assertSame('load_user', $q[5]['frames'][0]['function']);
        $this->assertStringEndsWith('script.php', $q[5]['frames'][0]['file']);
        $this->assertSame('{main}', $q[5]['frames'][1]['function']);
        foreach ($q as $query) {
            $this->assertSame('pdo', $query['source']);
        }
    }

    public function testPhalconListenerWithStandInConnection()
    {
        $env = $this->setUpAgent();
        $code = 'require ' . var_export(__DIR__ . '/fixtures/PhalconStandIn.php', true) . ";\n"
            . $this->connectCode('\PDO') . <<<'PHP'
$conn = new StandInPostgresql($db);
$conn->setEventsManager(new StandInEventsManager());
echo bitville_apm_attach_phalcon($conn) ? "attached\n" : "not attached\n";
$name = $conn->query('SELECT current_setting(\'application_name\')')[0][0];
echo $name === 'bitville:' . bitville_apm_get_correlation_id() ? "tagged\n" : "untagged: $name\n";
$conn->query('SELECT CAST(:api_key AS text), CAST(:q AS text)', ['api_key' => 'SECRET_PHALCON_VAR', 'q' => 'plain'], ['api_key' => 2, 'q' => 2]);
$conn->begin();
$conn->createSavepoint('sp1');
try { $conn->query('SELECT 1/0'); } catch (PDOException $e) { echo "caught\n"; }
$conn->rollbackSavepoint('sp1');
$conn->commit();
$conn->query('SELECT 3');
PHP;
        $run = $this->runPhp($code, $env['config']);
        $this->assertSilent($run, "attached\ntagged\ncaught\n");
        $this->assertStringNotContainsString('SECRET_PHALCON_VAR', (string) file_get_contents(glob($env['spool'] . '/*')[0]));
        $q = $this->spoolRecords($env['spool'])[0]['sql']['queries'];
        $this->assertSame(['query', 'query', 'begin', 'savepoint', 'query', 'rollback_savepoint', 'commit', 'query'],
            array_column($q, 'op'));
        $this->assertSame(['api_key' => '[REDACTED]', 'q' => 'plain'], $q[1]['params']);
        $this->assertSame(['api_key' => 2, 'q' => 2], $q[1]['types']);
        $this->assertSame('SAVEPOINT sp1', $q[3]['sql']);
        // The division by zero threw before afterQuery: failed, not lost.
        $this->assertSame('SELECT ?/?', $q[4]['sql'], 'literals are replaced');
        $this->assertSame('failed', $q[4]['status']);
        $this->assertSame('ok', $q[7]['status']);
        $this->assertSame('phalcon', $q[0]['source']);
    }

    public function testQueryCapCountsDroppedStatements()
    {
        $env = $this->setUpAgent(['profiling' => ['sql_max_queries' => 3, 'sql_bound_values' => 'false']]);
        $code = $this->connectCode() . 'for ($i = 0; $i < 8; $i++) { $s = $db->prepare("SELECT ?::int"); $s->execute([$i]); }';
        $this->assertSilent($this->runPhp($code, $env['config']));
        $sql = $this->spoolRecords($env['spool'])[0]['sql'];
        $this->assertCount(3, $sql['queries']);
        $this->assertSame(8, $sql['total_count']);
        $this->assertSame(5, $sql['dropped']);
        $this->assertSame(5, $sql['not_stored']);
        $this->assertNull($sql['queries'][0]['params'], 'bound values are off');
        // Beyond the cap the shape is still counted (issue #20 §2, #23).
        $this->assertCount(1, $sql['fingerprints']);
        $this->assertSame('SELECT ?::int', $sql['fingerprints'][0]['sql']);
        $this->assertSame(8, $sql['fingerprints'][0]['count']);
        $this->assertSame(3, $sql['fingerprints'][0]['stored']);
        $this->assertEqualsWithDelta($sql['total_ms'], $sql['fingerprints'][0]['total_ms'], 0.01);
        $this->assertSame('{main}', $sql['fingerprints'][0]['frame']['function']);
    }

    /**
     * Issue #20 §2: the heavy request is never lost. 5,000 statements from
     * one function (an N+1 loop) with a 5 ms budget: the agent runs out of
     * time, and the record is trimmed, not dropped: metadata, timing, the
     * SQL counts and every execution per shape with its calling frame, the
     * heaviest statements.
     */
    public function testRequestOverBudgetWith5000StatementsLeavesATrimmedRecord()
    {
        $env = $this->setUpAgent(['transmission' => ['timeout_ms' => 5]]);
        $code = $this->connectCode() . <<<'PHP'
function load_variants($db, $n) {
    $s = $db->prepare('SELECT $1::int + 1 AS price');
    for ($i = 0; $i < $n; $i++) { $s->execute([$i]); $s->fetchAll(); }
}
$db->query('SELECT pg_sleep(0.05)')->fetchAll();
load_variants($db, 4999);
echo "done";
PHP;
        $run = $this->runPhp($code, $env['config']);
        $this->assertSilent($run, 'done');
        $records = $this->spoolRecords($env['spool']);
        $this->assertCount(1, $records, 'the heavy request was dropped');
        $r = $records[0];
        $this->assertSame('full', $r['record_type']);
        $this->assertSame('budget', $r['trimmed']['reason']);
        $this->assertSame(5000, $r['sql']['total_count']);
        $this->assertLessThanOrEqual(20, count($r['sql']['queries']), 'the heaviest statements only');
        $this->assertSame(5000 - count($r['sql']['queries']), $r['sql']['not_stored']);
        $byText = array_column($r['sql']['fingerprints'], null, 'sql');
        $loop = $byText['SELECT $1::int + ? AS price'];
        $this->assertSame(4999, $loop['count']);
        $this->assertSame('load_variants', $loop['frame']['function']);
        $this->assertStringEndsWith('script.php', $loop['frame']['file']);
        $this->assertSame(1, $byText['SELECT pg_sleep(?)']['count']);
        $this->assertGreaterThanOrEqual(45, $byText['SELECT pg_sleep(?)']['total_ms'], 'timed even when not captured');
        $this->assertGreaterThan(0, $loop['total_ms']);
        $this->assertArrayHasKey('cpu_user_ms', $r['resources']);
        $this->assertGreaterThanOrEqual(50, $r['duration_ms']);
    }

    public function testManyLongStatementsAreTrimmedUnderTheCap()
    {
        // Literals kept (sql_keep_literals), so the long text stays long.
        $env = $this->setUpAgent(['transmission' => ['max_record_bytes' => 16384],
            'profiling' => ['sql_keep_literals' => 'true']]);
        $code = $this->connectCode() . 'for ($i = 0; $i < 60; $i++) { $db->query("SELECT ' . "'\" . str_repeat(\"x\", 500) . \"'" . ' AS c$i"); }';
        $this->assertSilent($this->runPhp($code, $env['config']));
        $files = glob($env['spool'] . '/*');
        $this->assertLessThanOrEqual(16384 + 1, filesize($files[0]));
        $r = $this->spoolRecords($env['spool'])[0];
        $this->assertGreaterThan(0, $r['trimmed']['sql_items']);
        $this->assertSame(60, $r['sql']['total_count']);
        $this->assertSame(60 - $r['trimmed']['sql_items'], count($r['sql']['queries']));
    }
}
