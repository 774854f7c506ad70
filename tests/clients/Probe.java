// A tiny JDBC client for tests/test_bi_clients.py (single-file source launch, Java 11+):
//   java -cp /usr/share/java/postgresql.jar tests/clients/Probe.java JDBC_URL SQL...
// Runs each SQL statement in one transaction that is rolled back, and prints every result
// set as TSV: a header line of column labels, then one line per row (getString; NULL -> ""),
// then an empty line. Exits 1 with the driver's message on an SQL error.
import java.sql.*;

public class Probe {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0])) {
            c.setAutoCommit(false);
            StringBuilder out = new StringBuilder();
            for (int a = 1; a < args.length; a++) {
                try (Statement st = c.createStatement()) {
                    if (!st.execute(args[a])) continue;
                    try (ResultSet rs = st.getResultSet()) {
                        ResultSetMetaData md = rs.getMetaData();
                        int n = md.getColumnCount();
                        for (int i = 1; i <= n; i++) out.append(i > 1 ? "\t" : "").append(md.getColumnLabel(i));
                        out.append("\n");
                        while (rs.next()) {
                            for (int i = 1; i <= n; i++) {
                                String v = rs.getString(i);
                                out.append(i > 1 ? "\t" : "").append(v == null ? "" : v);
                            }
                            out.append("\n");
                        }
                        out.append("\n");
                    }
                }
            }
            c.rollback();
            System.out.print(out);
        } catch (SQLException e) {
            System.err.println(e.getMessage());
            System.exit(1);
        }
    }
}
