<?php
/**
 * Extension-free tests run on real PHP 7.4 (WebAssembly build, see
 * tests/package.json) and on the host PHP: no PHPUnit, no pgsql, no Excimer.
 * They prove the agent's classes load, keep their PDO signatures compatible,
 * and work on 7.4; and that the agent calls no function PHP 7.4 lacks.
 *
 * Usage: php run.php   (prints "N passed, N failed"; exit 1 on any failure)
 */

require __DIR__ . '/../support/SchemaCheck.php';
putenv('BITVILLE_APM_CONFIG=/nonexistent/bitville-apm.ini');
require __DIR__ . '/../../bitville-apm.php';

use BitvilleApm\Agent;
use BitvilleApm\Config;
use BitvilleApm\Redactor;
use BitvilleApm\Util;
use BitvilleApm\Tests\SchemaCheck;

$passed = 0;
$failed = 0;
$schema = __DIR__ . '/../../../../schemas/request.schema.json';

function check($name, callable $test)
{
    global $passed, $failed;
    try {
        $test();
        $passed++;
        echo "ok   $name\n";
    } catch (\Throwable $e) {
        $failed++;
        echo "FAIL $name: ", $e->getMessage(), ' (line ', $e->getLine(), ")\n";
    }
}

function same($expected, $actual, $what = '')
{
    if ($expected !== $actual) {
        throw new \RuntimeException($what . ' expected ' . var_export($expected, true) . ', got ' . var_export($actual, true));
    }
}

function tempDir()
{
    $dir = '/tmp/bitville-apm-php74-' . bin2hex(random_bytes(5));
    mkdir($dir . '/spool', 0777, true);
    mkdir($dir . '/state');
    return $dir;
}

function config($dir, array $general = [])
{
    $c = new Config();
    $c->apply([
        'general' => $general + ['enabled' => true, 'threshold_ms' => 0, 'project_name' => 'php74'],
        'profiling' => ['profiler' => 'none'],
        // A wide budget: PHP 7.4 under WebAssembly is slow, and the budget is
        // tested on the host's PHP.
        'transmission' => ['spool_dir' => $dir . '/spool', 'state_dir' => $dir . '/state', 'timeout_ms' => 10000],
    ]);
    return $c;
}

function spoolLines($dir, $schema)
{
    $lines = [];
    foreach (glob($dir . '/spool/*.ndjson') as $f) {
        if (!preg_match('/^php\.[0-9]{10}\.[0-9]+\.ndjson$/', basename($f))) {
            throw new \RuntimeException('bad spool file name ' . basename($f));
        }
        foreach (file($f, FILE_IGNORE_NEW_LINES) as $line) {
            $problems = SchemaCheck::line($line, $schema);
            if ($problems !== []) {
                throw new \RuntimeException('schema: ' . implode('; ', $problems));
            }
            $lines[] = json_decode($line, true);
        }
    }
    return $lines;
}

echo 'PHP ', PHP_VERSION, "\n";

check('no function missing on this PHP', function () {
    // Optional extensions, only called after a function_exists/class_exists guard.
    $optional = ['xhprof_enable', 'xhprof_disable', 'tideways_xhprof_enable', 'tideways_xhprof_disable',
        'posix_geteuid'];
    $missing = [];
    $files = array_merge([__DIR__ . '/../../bitville-apm.php'], glob(__DIR__ . '/../../src/*.php'));
    foreach ($files as $file) {
        $tokens = token_get_all((string) file_get_contents($file));
        $n = count($tokens);
        for ($i = 0; $i < $n; $i++) {
            $t = $tokens[$i];
            if (!is_array($t) || !in_array($t[0], [T_STRING, defined('T_NAME_FULLY_QUALIFIED') ? T_NAME_FULLY_QUALIFIED : -1], true)) {
                continue;
            }
            $j = $i + 1;
            while ($j < $n && is_array($tokens[$j]) && $tokens[$j][0] === T_WHITESPACE) {
                $j++;
            }
            if ($j >= $n || $tokens[$j] !== '(') {
                continue;
            }
            $k = $i - 1;
            while ($k >= 0 && is_array($tokens[$k]) && $tokens[$k][0] === T_WHITESPACE) {
                $k--;
            }
            $prev = $k >= 0 ? $tokens[$k] : null;
            if ($prev === '\\') {
                $k--;
                $prev = $k >= 0 ? $tokens[$k] : null;
            }
            if (is_array($prev) && in_array($prev[0], [T_OBJECT_OPERATOR, T_DOUBLE_COLON, T_FUNCTION, T_NEW, T_NS_SEPARATOR], true)) {
                continue;
            }
            if ($prev === '::' || $prev === '->') {
                continue;
            }
            $name = ltrim($t[1], '\\');
            if (!function_exists($name) && !in_array($name, $optional, true) && strpos($name, 'bitville_apm_') !== 0) {
                $missing[basename($file) . ':' . $t[2] . ' ' . $name] = true;
            }
        }
    }
    same([], array_keys($missing), 'functions missing');
});

check('uuid v4 and RFC 3339 ts', function () {
    for ($i = 0; $i < 100; $i++) {
        if (!preg_match('/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/', Util::uuid4())) {
            throw new \RuntimeException('bad uuid');
        }
    }
    same('2026-11-27T11:47:44.123456Z', Util::formatTs('0.12345600 1795780064'));
    same('1970-01-01T00:00:00.000000Z', Util::formatTs('0.00000000 0'));
});

check('truncate keeps UTF-8 whole', function () {
    same('ab', Util::truncate('abé', 3));
    same('abé', Util::truncate('abé', 4));
});

check('redaction by key, URL and SQL params', function () {
    $r = new Redactor((new Config())->redactPatterns, 16, 3);
    same(['user' => 'bob', 'Password' => '[REDACTED]', 'x_api_key' => '[REDACTED]'],
        $r->map(['user' => 'bob', 'Password' => 'p', 'x_api_key' => 'k']));
    same(['a' => 1, 'b' => 2, 'c' => 3, '[truncated]' => 1], $r->map(['a' => 1, 'b' => 2, 'c' => 3, 'd' => 4]));
    same(['nested' => ['sessionId' => '[REDACTED]']], $r->map(['nested' => ['sessionId' => 's']]));
    same('0123456789abcdef', $r->value(str_repeat('0123456789abcdef', 4)));
    same('/a?cc=1&CreditCard=[REDACTED]&t', $r->url('/a?cc=1&CreditCard=4111&t'));
    same([':token' => '[REDACTED]', 'id' => 5], $r->sqlParams('x', [':token' => 't', 'id' => 5]));
    same(['bob', '[REDACTED]'], $r->sqlParams('SELECT 1 FROM u WHERE name = ? AND passwd = ?', ['bob', 's']));
    same([1 => '[REDACTED]', 2 => 'bob'], $r->sqlParams('UPDATE u SET password = $1 WHERE name = $2', [1 => 's', 2 => 'bob'], true));
    same(['bob', '[REDACTED]'], $r->sqlParams('INSERT INTO u (name, "ssn") VALUES ($1, $2)', ['bob', 's']));
});

check('secret channels of issue 20: joined keys, SQL by column, literals, DETAIL lines, URL headers', function () {
    $r = new Redactor((new Config())->redactPatterns, 64, 10);
    same(['card' => ['number' => '[REDACTED]', 'exp' => '12/30'], 'user' => ['password' => '[REDACTED]']],
        $r->map(['card' => ['number' => '4111', 'exp' => '12/30'], 'user' => ['password' => 'p']]));
    same('/a?card[number]=[REDACTED]&x=1', $r->url('/a?card[number]=4111&x=1'));
    same([':p' => '[REDACTED]', ':n' => 'bob'], $r->sqlParams('SELECT 1 FROM u WHERE password = :p AND name = :n',
        [':p' => 's', ':n' => 'bob']));
    same(['bob', '[REDACTED]'], $r->sqlParams('INSERT INTO u (name, password) VALUES (?, md5(?))', ['bob', 's']));
    same(['[REDACTED]', '[REDACTED]', 'bob', 3], $r->sqlParams(
        'UPDATE u SET password = crypt(?, gen_salt(?)), name = ? WHERE id = ?', ['s', 'bf', 'bob', 3]));
    same(['[REDACTED]'], $r->sqlParams('SELECT f(?) FROM u WHERE api_token IS NOT NULL', ['s']), 'unplaced, secret nearby');
    same(['x'], $r->sqlParams('SELECT f(?) FROM u', ['x']), 'unplaced, nothing secret');
    same("SELECT a FROM u WHERE password = ? AND n = ? AND t1.c::int4 = $1 AND \"col 9\" = ? AND d = ?",
        Redactor::scrubLiterals("SELECT a FROM u WHERE password = 'it''s' AND n = 42 AND t1.c::int4 = $1"
            . " AND \"col 9\" = E'a\\'b' AND d = \$q\$x\$q\$"));
    same("ERROR: duplicate key value violates unique constraint \"u_pw\"\nDETAIL:  Key (password)=([REDACTED]) already exists.",
        $r->error("ERROR: duplicate key value violates unique constraint \"u_pw\"\nDETAIL:  Key (password)=(hunter2) already exists."));
    same('DETAIL:  Key (email)=(a@b.c) already exists.', $r->error('DETAIL:  Key (email)=(a@b.c) already exists.'));
    same('DETAIL:  Failing row contains ([REDACTED]).', $r->error('DETAIL:  Failing row contains (1, bob, hunter2).'));
});

check('config: missing file leaves the agent off; values are clamped', function () {
    $c = Config::load('/nonexistent/x.ini');
    same(false, $c->enabled);
    same(true, $c->problem !== null);
    $c = new Config();
    $c->apply(['general' => ['enabled' => 'yes', 'sample_rate' => 7], 'profiling' => ['profiler' => 'bogus', 'max_stacks' => -3]]);
    same(true, $c->enabled);
    same(1.0, $c->sampleRate);
    same('auto', $c->profiler);
    same(1, $c->maxStacks);
});

check('lifecycle writes a schema-valid full record', function () use ($schema) {
    $dir = tempDir();
    Agent::reset();
    $a = Agent::start(config($dir), false);
    Agent::addContext('user_id', 7);
    Agent::addContext('auth_token', 'SECRET74');
    $result = $a->finish();
    same('written', $result['status']);
    $lines = spoolLines($dir, $schema);
    same(1, count($lines));
    same('full', $lines[0]['record_type']);
    same(['user_id' => 7, 'auth_token' => '[REDACTED]'], $lines[0]['context']);
    same(false, strpos($result['line'], 'SECRET74'));
    same(null, $a->finish(), 'finish runs once');
});

check('spool-full flag drops and counts', function () use ($schema) {
    $dir = tempDir();
    touch($dir . '/spool/.spool-full');
    Agent::reset();
    same('spool_full', Agent::start(config($dir), false)->finish()['status']);
    unlink($dir . '/spool/.spool-full');
    Agent::reset();
    same('written', Agent::start(config($dir), false)->finish()['status']);
    same(1, spoolLines($dir, $schema)[0]['agent']['dropped_records']);
});

check('missing spool dir opens the breaker', function () {
    $dir = tempDir();
    rmdir($dir . '/spool');
    $statuses = [];
    for ($i = 0; $i < 4; $i++) {
        Agent::reset();
        $statuses[] = Agent::start(config($dir), false)->finish()['status'];
    }
    same(['write_failed', 'write_failed', 'write_failed', 'breaker_open'], $statuses);
    \BitvilleApm\Spool::resetMemory();
});

check('summary sampling weight', function () use ($schema) {
    $dir = tempDir();
    Agent::reset();
    $statuses = [];
    for ($i = 0; $i < 20; $i++) {
        Agent::reset();
        $statuses[] = Agent::start(config($dir, ['threshold_ms' => 100000, 'sample_rate' => 0.5]), false)->finish()['status'];
    }
    same([], array_diff($statuses, ['written', 'not_kept']), 'statuses');
    same(count(array_keys($statuses, 'written')), count(spoolLines($dir, $schema)));
    foreach (spoolLines($dir, $schema) as $r) {
        same('summary', $r['record_type']);
        same(2, (int) $r['sampling_weight']);
    }
});

check('size cap trims the SQL tail', function () use ($schema) {
    $record = ['v' => 1, 'kind' => 'request', 'id' => Util::uuid4(), 'ts' => '2026-11-27T11:47:44.123456Z',
        'project' => 'p', 'host' => 'h', 'correlation_id' => Util::uuid4(), 'record_type' => 'full',
        'sampling_weight' => 1, 'duration_ms' => 1, 'runtime' => ['sapi' => 'cli', 'php_version' => PHP_VERSION, 'pid' => 1],
        'sql' => ['queries' => []]];
    for ($i = 0; $i < 200; $i++) {
        $record['sql']['queries'][] = ['sql' => str_repeat('x', 100), 'start_ms' => 0, 'duration_ms' => 0, 'status' => 'ok'];
    }
    $json = Agent::encode($record, 8192);
    same(true, strlen($json) <= 8192);
    same([], SchemaCheck::line($json, $schema));
    same(true, json_decode($json, true)['trimmed']['sql_items'] > 0);
});

check('PDO subclass captures query, exec and execute (sqlite)', function () use ($schema) {
    if (!in_array('sqlite', \PDO::getAvailableDrivers(), true)) {
        echo "     (skipped: no pdo_sqlite on this PHP; PostgresTest covers PDO on the host)\n";
        return;
    }
    $dir = tempDir();
    Agent::reset();
    $a = Agent::start(config($dir), false);
    $db = new \BitvilleApm\Pdo('sqlite::memory:', null, null, [\PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION]);
    $db->exec('CREATE TABLE t (name TEXT, secret TEXT)');
    $s = $db->prepare('INSERT INTO t (name, secret) VALUES (?, ?)');
    same(true, $s->execute(['a', 'SQLSECRET']));
    $s = $db->prepare('SELECT name FROM t WHERE name = :name');
    $s->bindValue(':name', 'a');
    $s->execute();
    same('a', $s->fetchColumn());
    same(1, count($db->query('SELECT * FROM t', \PDO::FETCH_ASSOC)->fetchAll()));
    try {
        $db->query('SELECT * FROM missing');
    } catch (\PDOException $e) {
        // The application's exception, unchanged.
    }
    $line = $a->finish()['line'];
    same(false, strpos($line, 'SQLSECRET'));
    $q = spoolLines($dir, $schema)[0]['sql']['queries'];
    same(['exec', 'execute', 'execute', 'query', 'query'], array_column($q, 'op'));
    same('failed', $q[4]['status']);
    same([':name' => 'a'], $q[2]['params']);
});

echo "$passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
